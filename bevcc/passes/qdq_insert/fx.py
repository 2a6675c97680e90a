"""fx `qdq_insert`: fake-quant quantizers on every Conv/ConvTranspose/Linear/matmul, calibrated.

Placement (docs/tensorrt_qdq.md): a per-tensor quantizer on the activation input of each
quantized layer (both operands of a matmul/bmm), and a per-output-channel quantizer on its weight.
Each input edge gets its own quantizer here; which edges share one is quantizer_unify's job.
"""

from __future__ import annotations

import operator
import warnings

import torch
from torch import fx

from bevcc.batching import fit_batches, fx_input_shapes
from bevcc.device import device_of
from bevcc.errors import UsageError
from bevcc.ir.fx import FxIR, is_weighted_layer, layers_text, weighted_layers
from bevcc.passes.qdq_insert import FX
from bevcc.passes.qdq_insert.options import QdqOptions
from bevcc.pm.pass_base import Pass, PassResult
from bevcc.quant import modules as qm
from bevcc.quant.calibrate import calibrate
from bevcc.quant.config import QuantConfig, QuantSpec, load_quant_config
from bevcc.quant.quantizer import TensorQuantizer
from bevcc.quant.ranges import ReplaysRanges

MATMUL_FUNCTIONS = {torch.matmul, torch.bmm, operator.matmul}
MATMUL_METHODS = {"matmul", "bmm"}


def quant_config(options: QdqOptions, from_api=None):
    """The effective config: pipeline options as defaults, then the config file (or the Python
    API's QuantConfig/dict when no file is named)."""
    base = {
        "calibrator": options.calibrator,
        "percentile": options.percentile,
        "per_channel": options.per_channel,
    }
    config = load_quant_config(options.config or from_api)
    config = QuantConfig(config.default, dict(config.ops), list(config.overrides))  # a copy
    # Pipeline options are the defaults; the file's own top-level settings win over them.
    file_defaults = {
        f: getattr(config.default, f)
        for f in base
        if getattr(config.default, f) != getattr(QuantSpec(), f)
    }
    default = QuantSpec().updated({**base, **file_defaults}, "qdq_insert options")
    ops = {
        op: default.updated(
            {f: getattr(spec, f) for f in base if getattr(spec, f) != getattr(config.default, f)},
            op,
        )
        for op, spec in config.ops.items()
    }
    config.default, config.ops = default, ops
    return config


class QdqInsertFx(ReplaysRanges, Pass, declaration=FX):
    def report(self, stats: dict) -> list[str]:
        return report_lines(stats)

    def call(self, ir: FxIR) -> PassResult:
        config = quant_config(self.options, getattr(self.context, "quant_config", None))
        graph, module = ir.graph, ir.module
        modules = dict(module.named_modules())
        _refuse_unquantizable(
            config,
            {
                **{n.name: n.op for n in graph.nodes},
                **{
                    name: type(m).__name__
                    for name, m in modules.items()
                    if name and type(m) not in qm.QUANT_CLASSES
                },
            },
            modules,
        )
        quantized: dict[str, int] = {}
        kept_float: list[str] = []
        floored: list[str] = []
        weight_quantizers = 0
        names_seen: list[str] = []
        inputs: dict[str, TensorQuantizer] = {}
        for node in list(graph.nodes):
            target = _quantizable(node, modules)
            if target is None:
                continue
            name, op_type, layer = target
            names_seen.append(name)
            spec = config.resolve(name, op_type)
            if not spec.enabled:
                kept_float.append(name)
                continue
            if layer is not None:
                axis = qm.weight_axis(layer, spec.per_channel, self.options.conv_transpose_axis)
                if qm.quantize_layer(layer, axis):
                    floored.append(f"{name}.weight_quantizer")
                weight_quantizers += 1
                _insert_input_quantizer(ir, node, 0, f"{name}.input_quantizer", spec, inputs)
            else:
                for i in (0, 1):
                    _insert_input_quantizer(
                        ir, node, i, f"{node.name}_input{i}_quantizer", spec, inputs
                    )
            label = type(layer).__name__.removeprefix("Quant") if layer is not None else "matmul"
            quantized[label] = quantized.get(label, 0) + 1
        hidden = _hidden_in_leaves(ir, modules)
        if not quantized and hidden:  # an all-float file is never what qdq_insert was asked for
            raise UsageError(
                f"qdq_insert: nothing to quantize: {'; '.join(hidden)}: {_INSIDE_LEAF}"
            )
        for clause in hidden:
            warnings.warn(f"qdq_insert: {clause}: {_INSIDE_LEAF}", stacklevel=2)
        if not quantized:
            return PassResult(ir, modified=False, stats={"quantized": {}, "kept_float": kept_float})
        module.recompile()
        report = self._calibrate(ir, inputs)
        return PassResult(
            ir,
            modified=True,
            stats={
                "quantized": dict(sorted(quantized.items())),
                "quantizers": len(inputs) + weight_quantizers,
                "batches": report.batches,
                "unused_samples": report.unused_samples,
                "calibrator": config.default.calibrator,
                "kept_float": kept_float,
                "floored": floored + report.floored,
                "unused_overrides": config.unused_overrides(names_seen),
            },
        )

    def _calibrate(self, ir: FxIR, inputs: dict[str, TensorQuantizer]):
        calib = self.context.calib if self.context is not None else None
        if calib is None:
            raise UsageError(
                "qdq_insert needs calibration data for its activation quantizers: "
                "give --calib DATA (bevcc.compile(..., calib=...))"
            )
        names = [n.name for n in ir.graph.nodes if n.op == "placeholder"]
        return calibrate(
            ir.module,
            fit_batches(calib, fx_input_shapes(ir)),
            names,
            ir.example_inputs,
            quantizers=inputs,
            max_batches=self.options.max_batches,
            device=device_of(self.context),
            **self.ranges_arguments(),
        )


def report_lines(stats: dict) -> list[str]:
    """`bevcc compile` lines of both qdq_insert passes."""
    counts = stats.get("quantized", {})
    layers = ", ".join(f"{k} {v}" for k, v in counts.items())
    head = (
        f"quantized {sum(counts.values())} layers ({layers}), "
        f"{stats.get('quantizers', 0)} quantizers, calibrated on "
        f"{stats.get('batches', 0)} batches ({stats.get('calibrator')})"
    )
    lines = [head]
    if stats.get("unused_samples"):
        lines.append(
            f"  {stats['unused_samples']} calibration sample(s) left over after the last "
            "full batch were not used"
        )
    lines += [f"  kept float: {name}" for name in stats.get("kept_float", [])]
    lines += [f"  amax floored (all-zero values): {name}" for name in stats.get("floored", [])]
    lines += [f"  override matched nothing: {p}" for p in stats.get("unused_overrides", [])]
    return lines


_INSIDE_LEAF = (
    "tracing does not look inside a leaf; register only the code that fails to trace as a leaf "
    "function to quantize them"
)


def _hidden_in_leaves(ir: FxIR, modules: dict) -> list[str]:
    """One clause per registered leaf module type whose calls hold Conv/Linear layers: those
    layers are inside one opaque node, so they stay float (a leaf-module hint followed for a
    module that holds the model's layers)."""
    paths: dict[type, list[str]] = {}
    for node in ir.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        if module is None or is_weighted_layer(module):  # a layer is no hiding place
            continue
        if isinstance(module, ir.leaf_types) and node.target not in paths.get(type(module), []):
            paths.setdefault(type(module), []).append(node.target)
    clauses = []
    for module_type, targets in paths.items():
        counts: dict[str, int] = {}
        for target in targets:
            for name, n in weighted_layers(modules[target]).items():
                counts[name] = counts.get(name, 0) + n
        if counts:
            shown = ", ".join(targets[:3]) + (
                f", +{len(targets) - 3} more" if len(targets) > 3 else ""
            )
            clauses.append(
                f"leaf module {module_type.__name__} ({shown}) keeps "
                f"{layers_text(dict(sorted(counts.items())))} float"
            )
    return clauses


def _refuse_unquantizable(config, kinds: dict[str, str], modules: dict) -> None:
    """An override naming (exactly, not by glob) something qdq_insert cannot quantize is a
    mistake worth stopping for: the user asked for a quantizer that would silently not exist."""
    quantizable = {name for name, m in modules.items() if type(m) in qm.QUANT_CLASSES}
    for pattern, values in config.overrides:
        if any(c in pattern for c in "*?[") or pattern in quantizable:
            continue
        if pattern in kinds and values.get("enabled", True):
            raise UsageError(
                f"qdq_insert: '{pattern}' is a {kinds[pattern]}, which has no "
                "quantizer; qdq_insert quantizes Conv1-3d, ConvTranspose1-3d, "
                "Linear and matmul/bmm (use a glob or remove the override)"
            )


def _quantizable(node: fx.Node, modules: dict):
    """(name, op type, layer or None for functional matmul) if qdq_insert handles `node`."""
    if node.op == "call_module":
        layer = modules.get(node.target)
        if type(layer) in qm.QUANT_CLASSES:
            return node.target, qm.OP_TYPE[type(layer)], layer
        return None
    if (node.op == "call_function" and node.target in MATMUL_FUNCTIONS) or (
        node.op == "call_method" and node.target in MATMUL_METHODS
    ):
        return node.name, "matmul", None
    return None


def _insert_input_quantizer(
    ir: FxIR,
    node: fx.Node,
    index: int,
    qualname: str,
    spec: QuantSpec,
    registry: dict[str, TensorQuantizer],
) -> None:
    source = node.args[index]
    if not isinstance(source, fx.Node):
        return
    quantizer = TensorQuantizer(calibrator=spec.calibrator, percentile=spec.percentile)
    ir.module.add_submodule(qualname, quantizer)
    registry[qualname] = quantizer
    with ir.graph.inserting_before(node):
        quantized = ir.graph.call_module(qualname, (source,))
    args = list(node.args)
    args[index] = quantized
    node.args = tuple(args)
