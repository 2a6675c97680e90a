"""`bevcc lint`'s warnings for TensorRT's operator limits (bevcc.trt.limits): where a graph passes
one, a line naming the node, the value, the limit as TensorRT documents it, and the way out. They
are warnings, not errors: the file is valid ONNX and runs in onnxruntime; TensorRT's build is
what rejects it."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from bevcc.trt.limits import MAX_RANK, TOPK_AXES, TOPK_K, TOPK_VOLUME, Limit

__all__ = ["limit_warnings"]


def limit_warnings(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> list[str]:
    """The warnings for `model`, whose tensors have `shapes` (bevcc.trt.macs.tensor_shapes)."""
    found = [
        f"tensor '{name}' has {len(shape)} dimensions: {_quoted(MAX_RANK)}"
        for name, shape in shapes.items()
        if len(shape) > MAX_RANK.bound
    ]
    constants = _constants(model)
    for node in model.graph.node:
        if node.op_type == "TopK" and node.domain in ("", "ai.onnx"):
            found += _topk(node, shapes, constants)
    return found


def _topk(node: onnx.NodeProto, shapes, constants) -> list[str]:
    where = f"TopK '{node.name or node.output[0]}'"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    k = attrs.get("k")  # opset 1-9: an attribute; from opset 10: the second input
    if len(node.input) > 1 and node.input[1] in constants:
        k = int(constants[node.input[1]].reshape(-1)[0])
    found = []
    if k is not None and k > TOPK_K.bound:
        found.append(
            f"{where}: K = {k} exceeds TensorRT's limit {_quoted(TOPK_K)}: the engine build "
            "rejects it; select in two stages (a TopK per class or per row, then one over their "
            "results) or lower K"
        )
    shape = shapes.get(node.input[0])
    if shape:
        axis = attrs.get("axis", -1)
        axis = axis + len(shape) if axis < 0 else axis
        if len(shape) - axis > TOPK_AXES.bound:
            found.append(
                f"{where}: it reduces axis {axis} of a rank-{len(shape)} input; "
                f"{_quoted(TOPK_AXES)}: transpose or reshape so the axis is among the last four"
            )
        volume = int(np.prod(shape, dtype=np.int64))
        if volume > TOPK_VOLUME.bound:
            found.append(
                f"{where}: its input has {volume} elements; TensorRT's TopK takes "
                f"{_quoted(TOPK_VOLUME)}: split the input"
            )
    return found


def _quoted(limit: Limit) -> str:
    return f"{limit.statement} ({limit.source})"


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and Constant nodes' values, by tensor name."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values
