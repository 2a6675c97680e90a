"""Evaluate a Q/DQ ONNX file with chosen units kept float, by onnxruntime: the ONNX side of the
analysis.

Each setting is the file with those units' Q/DQ removed (onnx_strip), run by onnxruntime on the
CPU with graph optimizations off, so what is measured is the graph as written, not onnxruntime's
rewrite of it. The float reference is the file with every unit removed. Outputs reach the metric
as torch tensors, one tuple per batch, exactly as the FX path gives them, so one metric (built-in
or a plugin's) serves both IRs. A setting measured once is not run again (the greedy search and
the all-INT8 score revisit settings).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch

from bevcc.device import ort_providers
from bevcc.errors import InputError
from bevcc.sensitivity.onnx_strip import strip


class OnnxEvaluator:
    def __init__(
        self,
        model: onnx.ModelProto,
        units: list,
        batches: list[dict],
        metric,
        description: str = "the evaluation data",
        device: str = "cpu",
    ):
        self.model, self.units, self.batches, self.metric = model, units, batches, metric
        self.description = description
        self.device = device  # onnxruntime's providers follow it (bevcc.device.ort_providers)
        initializers = {t.name for t in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        self._scores: dict[frozenset, float] = {}
        self.reference = self.outputs(units)

    def score(self, quantized: bool = True, except_units=()) -> float:
        """The metric with every unit INT8 (`quantized`) or float, except `except_units`, which
        get the opposite."""
        named = {u.name for u in except_units}
        floated = [u for u in self.units if (u.name in named) == quantized]
        key = frozenset(u.name for u in floated)
        if key not in self._scores:
            self._scores[key] = float(
                self.metric(self.outputs(floated), self.reference, self.batches)
            )
        return self._scores[key]

    def outputs(self, floated: list) -> list[tuple[torch.Tensor, ...]]:
        """Per batch, the outputs of the file with the units `floated` kept float."""
        session = _session(strip(self.model, floated), self.device)
        float_inputs = {i.name for i in session.get_inputs() if i.type == "tensor(float)"}
        results = []
        for index, batch in enumerate(self.batches):
            missing = [n for n in self.input_names if n not in batch]
            if missing:
                raise InputError(
                    f"evaluation batch {index} of {self.description} lacks "
                    f"input(s) {', '.join(missing)}; it has {', '.join(batch)}"
                )
            feed = {
                n: (
                    batch[n].astype(np.float32)
                    if n in float_inputs and batch[n].dtype == np.float64
                    else batch[n]
                )
                for n in self.input_names
            }
            try:
                values = session.run(None, feed)
            except Exception as exc:
                first = str(exc).strip().splitlines()[0]
                shapes = ", ".join(f"{n} {tuple(np.shape(v))}" for n, v in feed.items())
                raise InputError(
                    f"evaluation batch {index} of {self.description} ({shapes}) "
                    f"failed in onnxruntime: {first}"
                ) from exc
            results.append(tuple(torch.from_numpy(np.asarray(v)) for v in values))
        return results


def _session(model: onnx.ModelProto, device: str = "cpu"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=ort_providers(device))
