"""Check the encoding of every Q/DQ in an ONNX model against docs/tensorrt_qdq.md.

Per pair: int8 zero point, all zeros; finite, strictly positive scale; a per-channel axis that
matches the weight layout of the consumer (bevcc.trt.weights: Conv/Gemm[transB]/MatMul: output
channels; ConvTranspose: the configured axis); Q feeding only its DQ with nothing between; no Q/DQ
on a layer's bias input (bevcc.trt.rules). `bevcc lint` builds on this; qdq_insert's tests run it
on every file they emit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from bevcc.trt.rules import rule_for
from bevcc.trt.weights import TRANSPOSED, onnx_attrs, scale_axis


@dataclass(frozen=True)
class Problem:
    node: str
    message: str

    def __str__(self) -> str:
        return f"{self.node}: {self.message}"


def check_encoding(model: onnx.ModelProto, conv_transpose_axis: int = 0) -> list[Problem]:
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    problems: list[Problem] = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        problems += _check_params(node, constants)
        if node.op_type == "QuantizeLinear":
            readers = consumers.get(node.output[0], [])
            if not readers or any(r.op_type != "DequantizeLinear" for r in readers):
                ops = ", ".join(sorted({r.op_type for r in readers})) or "nothing"
                problems.append(Problem(node.name, f"feeds {ops}, not only a DequantizeLinear"))
        else:
            for reader in consumers.get(node.output[0], []):
                problems += _check_use(node, reader, conv_transpose_axis)
    return problems


def _check_params(node, constants) -> list[Problem]:
    out = []
    scale = constants.get(node.input[1]) if len(node.input) > 1 else None
    zero = constants.get(node.input[2]) if len(node.input) > 2 else None
    if scale is None:
        out.append(Problem(node.name, "scale is not a constant"))
    elif scale.size == 0 or not np.isfinite(scale).all() or (scale <= 0).any():
        out.append(Problem(node.name, "scale is zero, negative or not finite"))
    if zero is None:
        out.append(Problem(node.name, "zero point missing (int8 0 expected)"))
    elif zero.dtype != np.int8 or (zero != 0).any():
        out.append(
            Problem(
                node.name,
                f"zero point must be int8 0, got {zero.dtype} {zero.ravel()[:4].tolist()}",
            )
        )
    return out


def _check_use(dq, reader, conv_transpose_axis: int) -> list[Problem]:
    """A DQ read by a layer (a row of bevcc.trt.rules): not on its bias, and a per-channel
    weight on the axis TensorRT takes for the weight's layout (bevcc.trt.weights)."""
    rule = rule_for(reader)
    if rule is None or not rule.layer:
        return []
    axis = next((a.i for a in dq.attribute if a.name == "axis"), None)
    try:
        slot = list(reader.input).index(dq.output[0])
    except ValueError:
        return []
    if slot == rule.bias:
        return [Problem(dq.name, f"Q/DQ on the bias of {reader.name}")]
    if axis is None or slot != rule.weight:
        return []
    expected = scale_axis(rule, onnx_attrs(reader), {TRANSPOSED: conv_transpose_axis})
    if axis != expected:
        return [
            Problem(
                dq.name,
                f"per-channel axis {axis} on the weight of {reader.op_type} "
                f"{reader.name}; expected {expected}",
            )
        ]
    return []
