"""onnx `qdq_insert`: the FX pass's placement on a float ONNX file, calibrated with onnxruntime.

Conv / ConvTranspose / Gemm / MatMul get a per-tensor Q/DQ on their activation input(s) and a
per-channel Q/DQ on an initializer weight; scale and zero-point are initializers (int8 zero
point). One Q/DQ pair per quantized tensor and activation setting, read by all its quantized
consumers: the same file torch.onnx gives for the FX path, whose exporter merges identical pairs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from bevcc.batching import fit_batches
from bevcc.device import device_of
from bevcc.errors import UsageError
from bevcc.ir.onnx import OnnxIR
from bevcc.ir.onnx_static import constant_nodes
from bevcc.passes.qdq_insert import ONNX
from bevcc.passes.qdq_insert.fx import quant_config, report_lines
from bevcc.pm.pass_base import Pass, PassResult
from bevcc.quant import scales
from bevcc.quant.calibrators import make_calibrator
from bevcc.quant.onnx_calib import calibrate_tensors, input_shapes
from bevcc.trt.rules import rule_for_attrs
from bevcc.trt.weights import LAYOUTS, TRANSPOSED, scale_axis


@dataclass
class _Target:
    node: gs.Node
    op_type: str  # conv | conv_transpose | linear | matmul
    activations: list[int]  # input indices quantized per tensor
    weight: int | None = None  # input index of an initializer weight
    axis: int | None = None


class QdqInsertOnnx(Pass, declaration=ONNX):
    def report(self, stats: dict) -> list[str]:
        return report_lines(stats)

    def call(self, ir: OnnxIR) -> PassResult:
        config = quant_config(self.options, getattr(self.context, "quant_config", None))
        graph = ir.graph
        targets, kept_float, names = [], [], []
        for node in graph.nodes:
            target = _target(node, self.options.conv_transpose_axis)
            if target is None:
                continue
            names.append(node.name)
            spec = config.resolve(node.name, target.op_type)
            if not spec.enabled:
                kept_float.append(node.name)
                continue
            if target.weight is not None and not spec.per_channel:
                target.axis = None
            targets.append((target, spec))
        if not targets:
            return PassResult(ir, modified=False, stats={"quantized": {}, "kept_float": kept_float})
        # One activation quantizer per (tensor, calibrator settings).
        groups: dict[tuple, list[tuple[gs.Node, int]]] = {}
        for target, spec in targets:
            for index in target.activations:
                tensor = target.node.inputs[index]
                key = (tensor.name, spec.calibrator, spec.percentile)
                groups.setdefault(key, []).append((target.node, index))
        calibrators = {key: make_calibrator(key[1], None, key[2]) for key in groups}
        batches, unused = self._calibrate(ir, calibrators)
        floored: list[str] = []
        quantized: dict[str, int] = {}
        uniq = _Names(graph)
        for key, consumers in groups.items():
            tensor = consumers[0][0].inputs[consumers[0][1]]
            amax, dead = scales.floor_amax(calibrators[key].compute_amax().numpy())
            if dead.any():
                floored.append(tensor.name)
            dequantized = _qdq(graph, tensor, amax, None, uniq)
            for node, index in consumers:
                node.inputs[index] = dequantized
        weights_done: dict[tuple, gs.Variable] = {}
        for target, _spec in targets:
            quantized[target.node.op] = quantized.get(target.node.op, 0) + 1
            if target.weight is None:
                continue
            weight = target.node.inputs[target.weight]
            key = (weight.name, target.axis)
            if key not in weights_done:
                values = np.abs(np.asarray(weight.values, np.float64))
                if target.axis is None:
                    amax = values.max(initial=0.0)
                else:
                    dims = tuple(d for d in range(values.ndim) if d != target.axis)
                    amax = values.max(axis=dims, initial=0.0)
                amax, dead = scales.floor_amax(amax)
                if dead.any():
                    floored.append(f"{weight.name} ({int(dead.sum())} channels)")
                weights_done[key] = _qdq(graph, weight, amax, target.axis, uniq)
            target.node.inputs[target.weight] = weights_done[key]
        graph.toposort()
        return PassResult(
            ir,
            modified=True,
            stats={
                "quantized": dict(sorted(quantized.items())),
                "quantizers": len(groups) + len(weights_done),
                "batches": batches,
                "unused_samples": unused,
                "calibrator": config.default.calibrator,
                "kept_float": kept_float,
                "floored": floored,
                "unused_overrides": config.unused_overrides(names),
            },
        )

    def _calibrate(self, ir: OnnxIR, calibrators: dict) -> tuple[int, int]:
        """(batches used, samples left over after the last full batch)."""
        calib = self.context.calib if self.context is not None else None
        if calib is None:
            raise UsageError(
                "qdq_insert needs calibration data for its activation quantizers: "
                "give --calib DATA (bevcc.compile(..., calib=...))"
            )
        by_tensor = {}
        for key, calibrator in calibrators.items():
            by_tensor.setdefault(key[0], []).append(calibrator)
        fan_out = {name: _FanOut(cals) for name, cals in by_tensor.items()}
        model = ir.to_model()
        _warn_foldable(model)
        calib = fit_batches(calib, input_shapes(model))
        used = calibrate_tensors(
            model,
            fan_out,
            calib,
            budget_bytes=self.options.calib_memory_mb << 20,
            max_batches=self.options.max_batches,
            device=device_of(self.context),
        )
        return used, getattr(calib, "dropped", 0)


class _FanOut:
    """One tensor read once, fed to each calibrator that wants it."""

    def __init__(self, calibrators):
        self.calibrators = calibrators

    def collect(self, x) -> None:
        for calibrator in self.calibrators:
            calibrator.collect(x)


def _warn_foldable(model) -> None:
    """One line when the graph computes what its fixed input shapes already decide (a raw
    export's shape arithmetic): shape inference cannot size the tensors behind it, so each is
    calibrated in a run of its own (mmdet's Swin: 68 runs over the data instead of 2)."""
    found = constant_nodes(model)
    if found:
        ops = sorted({node.op_type for node in found})
        shown = ", ".join(ops[:4]) + (", ..." if len(ops) > 4 else "")
        warnings.warn(
            f"qdq_insert: {len(found)} node(s) ({shown}) compute constants this file's input "
            "shapes fix, which slows calibration: run onnx(simplify) first",
            stacklevel=2,
        )


def _target(node: gs.Node, conv_transpose_axis: int) -> _Target | None:
    """What to quantize on a compute layer (a row of bevcc.trt.rules with a weight): its
    activation per tensor and a constant weight per channel, on the axis its layout says."""
    rule = rule_for_attrs(node.op, node.attrs)
    if rule is None or not rule.layer:
        return None
    layout = LAYOUTS[rule.layout]

    def constant(index):
        return index < len(node.inputs) and isinstance(node.inputs[index], gs.Constant)

    weight = rule.weight
    if constant(weight) and layout.rank in (None, node.inputs[weight].values.ndim):
        axis = scale_axis(rule, node.attrs, {TRANSPOSED: conv_transpose_axis})
        return _Target(node, layout.kind, [0], weight, axis)
    if not layout.operand:  # a computed conv weight stays float; its input is still quantized
        return _Target(node, layout.kind, [0])
    # a matmul of two activations (or of a constant that is no weight): each operand per tensor
    return _Target(node, "matmul", [i for i in (0, weight) if not constant(i)])


class _Names:
    """Unique tensor names derived from a base name."""

    def __init__(self, graph: gs.Graph):
        self.taken = set(graph.tensors().keys())

    def __call__(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name


def _qdq(graph: gs.Graph, tensor: gs.Tensor, amax, axis: int | None, names: _Names) -> gs.Variable:
    scale = np.asarray(scales.scale_of(amax), np.float32)
    if axis is None:
        scale = scale.reshape(())
    if scales.bad_scale(scale):
        raise ValueError(f"scale for {tensor.name} is not finite and positive")
    scale_c = gs.Constant(names(f"{tensor.name}_scale"), scale)
    zero_c = gs.Constant(names(f"{tensor.name}_zero_point"), np.zeros(scale.shape, np.int8))
    attrs = {} if axis is None else {"axis": int(axis)}
    quantized = gs.Variable(names(f"{tensor.name}_quantized"), dtype=np.int8, shape=tensor.shape)
    dequantized = gs.Variable(
        names(f"{tensor.name}_dequantized"), dtype=np.float32, shape=tensor.shape
    )
    graph.nodes.append(
        gs.Node(
            "QuantizeLinear",
            names(f"{tensor.name}_QuantizeLinear"),
            attrs=dict(attrs),
            inputs=[tensor, scale_c, zero_c],
            outputs=[quantized],
        )
    )
    graph.nodes.append(
        gs.Node(
            "DequantizeLinear",
            names(f"{tensor.name}_DequantizeLinear"),
            attrs=dict(attrs),
            inputs=[quantized, scale_c, zero_c],
            outputs=[dequantized],
        )
    )
    return dequantized
