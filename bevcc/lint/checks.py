"""The findings of `bevcc lint`: predicted Reformats, encoding errors, the INT8 MAC share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import onnx

from bevcc.errors import InputError
from bevcc.ir.onnx_shapes import InferenceCrash
from bevcc.lint.typing import TypingReport, check_typing
from bevcc.quant.encoding_check import check_encoding
from bevcc.trt.domains import QdqGraph, from_dq
from bevcc.trt.macs import node_macs, tensor_shapes
from bevcc.trt.rules import ALL, rule_for

__all__ = ["LintReport", "Mismatch", "lint_model"]


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
            "typing": None if self.typing is None else self.typing.to_json(),
            "errors": self.errors,
        }


def lint_model(
    model: onnx.ModelProto, path: str = "<model>", conv_transpose_axis: int = 0
) -> LintReport:
    from bevcc.sparse.libspconv_check import check_libspconv, int8_share, is_libspconv_file

    report = LintReport(path)
    if is_libspconv_file(model):  # the lidar backbone file: libspconv's parser rules instead
        report.kind = "libspconv"
        report.problems = check_libspconv(model)
        report.int8_macs, report.total_macs, report.float_layers = int8_share(model)
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
    for node in graph.nodes:
        rule = rule_for(node)
        if rule is None or not rule.layer:
            continue
        macs = node_macs(node, shapes, graph)
        report.total_macs += macs
        if (
            _from_dq(graph, node.input[0])
            and len(node.input) > rule.weight
            and _from_dq(graph, node.input[rule.weight])
        ):
            report.int8_macs += macs
        else:
            report.float_layers.append(node.name or node.output[0])


def _from_dq(graph: QdqGraph, name: str) -> bool:
    return from_dq(graph, name) is not None
