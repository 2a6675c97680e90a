"""The findings of `bevcc lint`: predicted Reformats, encoding errors, the INT8 MAC share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import onnx

from bevcc.errors import InputError
from bevcc.ir.onnx_shapes import InferenceCrash
from bevcc.lint.layers import Layer, module_path, weight_type
from bevcc.lint.limits import limit_warnings
from bevcc.lint.typing import TypingReport, check_typing
from bevcc.quant.encoding_check import check_encoding
from bevcc.trt.domains import QdqGraph, from_dq
from bevcc.trt.macs import node_macs, tensor_shapes
from bevcc.trt.rules import ALL, rule_for

__all__ = ["Layer", "LintReport", "Mismatch", "lint_model"]


@dataclass
class Mismatch:
    where: str  # the tensor, Concat or Add
    kind: str  # "tensor" (several consumers / data-movement chain) | "concat" | "add"
    scales: list[float]
    nodes: list[str]

    @property
    def reformats(self) -> int:
        return len(self.scales) - 1


@dataclass
class LintReport:
    path: str
    kind: str = "qdq"  # or "libspconv"
    qdq_pairs: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # encoding errors
    int8_macs: int = 0
    total_macs: int = 0
    float_layers: list[str] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)  # every compute layer, in graph order
    warnings: list[str] = field(default_factory=list)  # TensorRT operator limits (not errors)

    @property
    def int8_layers(self) -> int:
        return sum(layer.int8 for layer in self.layers)

    typing: TypingReport | None = None  # strong typing (None for libspconv files)

    @property
    def reformats(self) -> int:
        return sum(m.reformats for m in self.mismatches)

    @property
    def int8_mac_share(self) -> float:
        return self.int8_macs / self.total_macs if self.total_macs else 0.0

    @property
    def errors(self) -> int:
        typing = len(self.typing.errors) if self.typing is not None else 0
        return len(self.problems) + self.reformats + typing

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "qdq_pairs": self.qdq_pairs,
            "predicted_reformats": self.reformats,
            "mismatches": [asdict(m) for m in self.mismatches],
            "encoding_problems": self.problems,
            "int8_macs": self.int8_macs,
            "total_macs": self.total_macs,
            "int8_mac_share": round(self.int8_mac_share, 6),
            "float_layers": self.float_layers,
            "int8_layers": self.int8_layers,
            "layers": [asdict(layer) for layer in self.layers],
            "typing": None if self.typing is None else self.typing.to_json(),
            "errors": self.errors,
            "warnings": self.warnings,
        }


def lint_model(
    model: onnx.ModelProto, path: str = "<model>", conv_transpose_axis: int = 0
) -> LintReport:
    from bevcc.sparse.libspconv_check import check_libspconv, is_libspconv_file, sparse_layers

    report = LintReport(path)
    if is_libspconv_file(model):  # the lidar backbone file: libspconv's parser rules instead
        report.kind = "libspconv"
        report.problems = check_libspconv(model)
        report.layers = sparse_layers(model)
        _totals(report)
        return report
    try:  # first: a graph onnx cannot even infer shapes on gets one error, not half a report
        shapes = tensor_shapes(model)
    except InferenceCrash as exc:
        raise InputError(f"{path}: {exc}") from exc
    graph = QdqGraph(model)
    report.qdq_pairs = sum(n.op_type == "QuantizeLinear" for n in graph.nodes)
    report.problems = [str(p) for p in check_encoding(model, conv_transpose_axis)]
    report.mismatches = _mismatches(graph)
    _macs(graph, shapes, report)
    report.typing = check_typing(model, graph, shapes, lambda node: node_macs(node, shapes, graph))
    # both walk the compute layers in graph order: the typing decides what each one runs at
    assert len(report.typing.layers) == len(report.layers)
    for layer, typed in zip(report.layers, report.typing.layers, strict=True):
        layer.precision, layer.fp32_reason = typed.precision, typed.reason
    report.warnings = limit_warnings(model, shapes)
    return report


def _mismatches(graph: QdqGraph) -> list[Mismatch]:
    found = []
    by_domain = graph.domain_scales()
    concat_of = {}
    for node in graph.nodes:  # ops whose inputs all share one scale: Concat
        rule = rule_for(node)
        if rule is not None and rule.shares_scale is ALL:
            concat_of.setdefault(graph.domains.find(node.output[0]), node.name)
    for root, scales in sorted(by_domain.items()):
        if len(scales) > 1:
            kind = "concat" if root in concat_of else "tensor"
            where = concat_of.get(root, root)
            found.append(
                Mismatch(
                    where,
                    kind,
                    sorted(scales),
                    sorted(n for names in scales.values() for n in names),
                )
            )
    for node in graph.nodes:
        if not graph.is_activation_add(node):
            continue
        sides = [by_domain.get(graph.domains.find(name), {}) for name in node.input]
        if all(len(s) == 1 for s in sides):
            (a,), (b,) = (list(s) for s in sides)
            if a != b:
                found.append(Mismatch(node.name, "add", sorted({a, b}), list(node.input)))
    return found


def _macs(graph: QdqGraph, shapes: dict[str, list[int]], report: LintReport) -> None:
    """A layer runs INT8 when its activation and its weight both come from DQs."""
    initializers = {t.name: t for t in graph.model.graph.initializer}
    for node in graph.nodes:
        rule = rule_for(node)
        if rule is None or not rule.layer:
            continue
        has_weight = len(node.input) > rule.weight
        weight = node.input[rule.weight] if has_weight else ""
        report.layers.append(
            Layer(
                onnx=node.name or node.output[0],
                module=module_path(weight, graph.producer, initializers) if weight else None,
                macs=node_macs(node, shapes, graph),
                int8=bool(_from_dq(graph, node.input[0]) and weight and _from_dq(graph, weight)),
                weight_type=weight_type(weight, graph.producer, initializers),
            )
        )
    _totals(report)


def _totals(report: LintReport) -> None:
    """The INT8 and total MACs and the names of the layers not in INT8, from `report.layers`."""
    report.total_macs = sum(layer.macs for layer in report.layers)
    report.int8_macs = sum(layer.macs for layer in report.layers if layer.int8)
    report.float_layers = [layer.onnx for layer in report.layers if not layer.int8]


def _from_dq(graph: QdqGraph, name: str) -> bool:
    return from_dq(graph, name) is not None
