"""Strong typing, as TensorRT 11 (and 10 with --stronglyTyped) builds a file: each compute layer
runs in the types of its tensors. This module reads those types and says at what precision each
layer will run, and what in the file works against the precision it declares.

- A layer whose activation and weight both come from DequantizeLinear runs INT8; any other layer
  runs in its activation input's type (a DequantizeLinear's output has its scale's type).
- A file the strong_typing pass wrote declares its float precision and the layers it kept fp32,
  with their reasons, in its metadata (bevcc.trt.typing): an fp32 layer not among those is an
  error. A file with Q/DQ and no fp16 tensor at all is weakly typed (as every peer tool writes
  them): TensorRT 11 builds its float layers FP32, and only TensorRT <= 10's precision flags
  (--int8 --fp16) give them fp16.
- Risks: Casts that undo each other, fp16 initializers that are already inf or NaN, an fp32
  initializer cast to fp16 past 65504, an fp16 tensor whose calibrated range (the file carries
  it as its QuantizeLinear's scale) passes 65504, and Q/DQ scales that fp16 holds only as
  subnormals.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from bevcc.ir.onnx_shapes import InferenceCrash, infer_shapes
from bevcc.trt.domains import from_dq
from bevcc.trt.fp16 import FP16_MAX, FP16_MIN_NORMAL
from bevcc.trt.rules import rule_for
from bevcc.trt.typing import FLOAT_PRECISION_KEY, FP32_NODES_KEY

__all__ = ["TypedLayer", "TypingReport", "check_typing"]

_PRECISION = {
    onnx.TensorProto.FLOAT: "fp32",
    onnx.TensorProto.FLOAT16: "fp16",
    onnx.TensorProto.BFLOAT16: "bf16",
    onnx.TensorProto.DOUBLE: "fp64",
}
_INTEGER_QUANT = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}


@dataclass
class TypedLayer:
    node: str
    op: str
    precision: str  # int8 | fp16 | fp32 | bf16 | unknown
    macs: int
    reason: str | None = None  # why it stays fp32, as the file records it


@dataclass
class TypingReport:
    declared: str | None = None  # the float precision the file declares (metadata), or None
    weakly_typed: bool = False
    layers: list[TypedLayer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def mac_shares(self) -> dict[str, float]:
        """Share of the compute layers' MACs per precision (int8, fp16, fp32, ...)."""
        total = sum(layer.macs for layer in self.layers)
        by = Counter()
        for layer in self.layers:
            by[layer.precision] += layer.macs
        return {k: round(v / total, 6) if total else 0.0 for k, v in sorted(by.items())}

    def to_json(self) -> dict:
        return {
            "declared": self.declared,
            "weakly_typed": self.weakly_typed,
            "mac_shares": self.mac_shares(),
            "layers": [asdict(layer) for layer in self.layers],
            "errors": self.errors,
            "warnings": self.warnings,
        }


def check_typing(model: onnx.ModelProto, graph, shapes: dict, node_macs) -> TypingReport:
    """`graph`: the file's QdqGraph; `node_macs(node)`: a layer's MACs (bevcc.trt.macs)."""
    report = TypingReport()
    meta = {p.key: p.value for p in model.metadata_props}
    report.declared = meta.get(FLOAT_PRECISION_KEY)
    kept = json.loads(meta.get(FP32_NODES_KEY, "{}"))
    types = _tensor_types(model)
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        rule = rule_for(node)
        if rule is None or not rule.layer:
            continue
        precision = _layer_precision(node, rule, graph, types)
        layer = TypedLayer(node.name, node.op_type, precision, node_macs(node), kept.get(node.name))
        report.layers.append(layer)
        if report.declared == "fp16" and precision == "fp32" and layer.reason is None:
            report.errors.append(
                f"{node.name} ({node.op_type}) computes in fp32 in a file declared fp16, and the "
                "file records no reason for it"
            )
    # Weakly typed: Q/DQ with fp32 scales and no layer typed fp16, as every peer tool writes them
    # (a stray fp16 Cast does not make a file typed).
    has_qdq = any(n.op_type == "DequantizeLinear" for n in model.graph.node)
    fp16_scales = any(
        n.op_type == "DequantizeLinear"
        and len(n.input) > 1
        and types.get(n.input[1]) == onnx.TensorProto.FLOAT16
        for n in model.graph.node
    )
    fp16_layers = any(layer.precision == "fp16" for layer in report.layers)
    if has_qdq and not (fp16_scales or fp16_layers) and report.declared is None:
        report.weakly_typed = True
        report.warnings.append(
            "weakly typed: every float tensor is fp32, so TensorRT 11 builds the layers outside "
            "Q/DQ in FP32; they get fp16 only on TensorRT <= 10 with --int8 --fp16 (type the "
            "file for fp16 first: with the typing pass `bevcc passes` lists, or ModelOpt "
            "AutoCast)"
        )
    report.warnings += _cancelling_casts(model, types)
    report.errors += _initializer_overflow(model, inits, types)
    report.errors += _calibrated_overflow(model, inits, types)
    report.warnings += _subnormal_scales(model, inits)
    return report


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = infer_shapes(model)
    except InferenceCrash:
        raise
    except Exception:  # noqa: BLE001 - declared types of inputs, outputs and initializers remain
        inferred = model
    types = {}
    for info in (
        list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    ):
        types[info.name] = info.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    for node in model.graph.node:  # DequantizeLinear's output type is its scale's
        if node.op_type == "DequantizeLinear" and len(node.input) > 1 and node.input[1] in types:
            types[node.output[0]] = types[node.input[1]]
    return types


def _layer_precision(node, rule, graph, types) -> str:
    activation = node.input[0]
    weight = node.input[rule.weight] if len(node.input) > rule.weight else None
    if _int8_source(graph, activation, types) and weight and _int8_source(graph, weight, types):
        return "int8"
    return _PRECISION.get(types.get(activation, 0), "unknown")


def _int8_source(graph, name: str, types) -> bool:
    """Produced by a DequantizeLinear of INT8/UINT8 data (directly or through the single-input
    data-movement ops TensorRT moves DQ through)."""
    producer = from_dq(graph, name)
    return producer is not None and types.get(producer.input[0]) in _INTEGER_QUANT


def _cancelling_casts(model, types) -> list[str]:
    producer = {o: n for n in model.graph.node for o in n.output}
    found = []
    for node in model.graph.node:
        if node.op_type != "Cast":
            continue
        to = next(a.i for a in node.attribute if a.name == "to")
        source = types.get(node.input[0])
        if source == to:
            found.append(f"Cast {node.name} casts {node.input[0]} to the type it already has")
            continue
        before = producer.get(node.input[0])
        if before is not None and before.op_type == "Cast":
            origin = types.get(before.input[0])
            if origin == to:
                found.append(
                    f"Casts {before.name} and {node.name} cancel out "
                    f"({_PRECISION.get(origin, origin)} -> {_PRECISION.get(source, source)} -> "
                    f"{_PRECISION.get(to, to)}): one tensor of the two is enough"
                )
    return found


def _initializer_overflow(model, inits, types) -> list[str]:
    found = []
    for name, init in inits.items():
        if init.data_type == onnx.TensorProto.FLOAT16:
            values = numpy_helper.to_array(init)
            if not np.isfinite(values).all():
                found.append(f"fp16 initializer {name} holds inf or NaN (overflowed when cast)")
    for node in model.graph.node:
        if node.op_type != "Cast" or node.input[0] not in inits:
            continue
        to = next(a.i for a in node.attribute if a.name == "to")
        values = numpy_helper.to_array(inits[node.input[0]])
        absmax = float(np.abs(values).max(initial=0.0)) if values.size else 0.0
        if to == onnx.TensorProto.FLOAT16 and absmax > FP16_MAX:
            found.append(
                f"Cast {node.name} turns initializer {node.input[0]} (max |x| {absmax:.4g}) into "
                f"fp16, whose largest value is {FP16_MAX:g}: it becomes inf"
            )
    return found


def _calibrated_overflow(model, inits, types) -> list[str]:
    """A QuantizeLinear's scale is the range calibration found for its input (scale x 127 for
    INT8, x 255 for UINT8); when that input is fp16 and the range passes 65504, the values over
    it are already inf before they are quantized."""
    found = []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 2 or node.input[0] in inits:
            continue
        if types.get(node.input[0]) != onnx.TensorProto.FLOAT16 or node.input[1] not in inits:
            continue
        zero = inits.get(node.input[2]) if len(node.input) > 2 else None
        levels = 255 if zero is not None and zero.data_type == onnx.TensorProto.UINT8 else 127
        scale = np.abs(numpy_helper.to_array(inits[node.input[1]]).astype(np.float64))
        calibrated = float(scale.max(initial=0.0)) * levels
        if calibrated > FP16_MAX:
            found.append(
                f"QuantizeLinear {node.name}: {node.input[0]} is fp16 but was calibrated to "
                f"+-{calibrated:.4g} (its scale), past fp16's largest value {FP16_MAX:g}; keep "
                "the layer that produces it fp32"
            )
    return found


def _subnormal_scales(model, inits) -> list[str]:
    found = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 2:
            continue
        init = inits.get(node.input[1])
        if init is None or init.data_type != onnx.TensorProto.FLOAT16:
            continue
        scale = np.abs(numpy_helper.to_array(init).astype(np.float64))
        if (scale == 0).any():
            found.append(f"{node.op_type} {node.name}: an fp16 scale is 0")
        elif (scale < FP16_MIN_NORMAL).any():
            found.append(
                f"{node.op_type} {node.name}: fp16 scale {scale.min():.3g} is subnormal (under "
                f"{FP16_MIN_NORMAL:.3g}); it keeps fewer significant bits than its neighbours"
            )
    return found
