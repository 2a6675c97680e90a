"""One compute layer of an ONNX file as a person reads it: its ONNX node name, the PyTorch module
it came from, its MACs, and the precision the file gives it.

The ONNX node names torch's exporter writes lose the module path when the model is an fx
GraphModule (bevcc's pipelines export those): `backbone.layer1.2.conv1` becomes `/conv1_3/Conv`,
the third `conv1` scope. The weight keeps it: PyTorch exporters name parameters by their
state-dict key (`backbone.layer1.2.conv1.weight`), and bevcc's libspconv export does the same.
So the module path is read off the weight initializer, through its Q/DQ; a weight the exporter
computed (constant folding, a transposed Linear weight: `onnx::MatMul_245`) has no module path.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

__all__ = ["Layer", "module_path", "weight_type"]

_WEIGHT_SUFFIX = ".weight"


@dataclass
class Layer:
    onnx: str  # the node's name (its first output when unnamed)
    module: str | None  # the PyTorch module path, when the weight's name gives it
    macs: int
    int8: bool  # the file runs it in INT8 (Q/DQ on input and weight; libspconv precision int8)
    weight_type: str  # "fp32" | "fp16": how the file stores its weight (or "int8": pre-quantized)
    # what TensorRT 11 (10 with --stronglyTyped) runs it at: int8, or the type of its float
    # tensors (bevcc.lint.typing); a libspconv layer: int8 or fp16
    precision: str = "fp32"
    fp32_reason: str | None = None  # why a typed file keeps it fp32 (the file's metadata)

    @property
    def label(self) -> str:
        """`module (onnx name)`, or the ONNX name alone when there is no module path."""
        return f"{self.module} ({self.onnx})" if self.module else self.onnx


def _weight_initializer(
    name: str, producer: dict[str, onnx.NodeProto], initializers: dict[str, onnx.TensorProto]
) -> onnx.TensorProto | None:
    """The initializer a layer's weight input reads, through DequantizeLinear/QuantizeLinear
    (and a Cast); None for a computed weight."""
    for _ in range(4):
        if name in initializers:
            return initializers[name]
        node = producer.get(name)
        if node is None or node.op_type not in ("DequantizeLinear", "QuantizeLinear", "Cast"):
            return None
        name = node.input[0]
    return None


def module_path(
    weight_input: str,
    producer: dict[str, onnx.NodeProto],
    initializers: dict[str, onnx.TensorProto],
) -> str | None:
    """The module path of the layer whose weight input is `weight_input`, or None."""
    tensor = _weight_initializer(weight_input, producer, initializers)
    if tensor is None or not tensor.name.endswith(_WEIGHT_SUFFIX):
        return None
    path = tensor.name[: -len(_WEIGHT_SUFFIX)]
    return path or None


_TYPES = {onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.INT8: "int8"}


def weight_type(
    weight_input: str,
    producer: dict[str, onnx.NodeProto],
    initializers: dict[str, onnx.TensorProto],
) -> str:
    """ "fp16" for a float16 weight, "int8" for a stored INT8 weight, else "fp32" (float32, or a
    weight computed at run time, which TensorRT builds from the file's float32 tensors)."""
    tensor = _weight_initializer(weight_input, producer, initializers)
    return _TYPES.get(tensor.data_type, "fp32") if tensor is not None else "fp32"
