"""Evidence for the fp16/fp32 decision: each float tensor's largest magnitude on the calibration
data (onnxruntime, fp32 file, in bounded memory), and the initializers' values."""

from __future__ import annotations

import numpy as np
import onnx

from bevcc.ir.onnx_shapes import infer_shapes
from bevcc.quant.onnx_calib import calibrate_tensors

_FLOAT = onnx.TensorProto.FLOAT


class _AbsMax:
    """A calibrator-shaped collector: the largest |value| seen."""

    def __init__(self):
        self.value = 0.0

    def collect(self, x) -> None:
        if x.numel():
            self.value = max(self.value, float(x.detach().abs().max()))


def float_activations(model: onnx.ModelProto) -> list[str]:
    """Names of the fp32 tensors the graph computes or takes as input (not initializers)."""
    inferred = infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types.update({v.name: v.type.tensor_type.elem_type for v in inferred.graph.output})
    initializers = {t.name for t in model.graph.initializer}
    names = [
        i.name
        for i in model.graph.input
        if i.name not in initializers and i.type.tensor_type.elem_type == _FLOAT
    ]
    for node in model.graph.node:
        names += [o for o in node.output if o and types.get(o) == _FLOAT]
    return list(dict.fromkeys(names))


def activation_ranges(
    model: onnx.ModelProto, calib, max_batches: int, device: str = "cpu"
) -> tuple[dict, int]:
    """({tensor name: max |value| on the calibration batches}, batches used); onnxruntime runs
    on `device` where it can (bevcc.device.ort_providers)."""
    collectors = {name: _AbsMax() for name in float_activations(model)}
    used = calibrate_tensors(
        model, collectors, calib, max_batches=max_batches, progress=False, device=device
    )
    return {name: c.value for name, c in collectors.items()}, used


def float_initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """fp32 initializers by name (values loaded; bevcc's files keep them inline)."""
    from onnx import numpy_helper

    return {
        t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == _FLOAT
    }
