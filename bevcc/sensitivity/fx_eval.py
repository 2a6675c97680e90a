"""Evaluate a quantized FX module with chosen units switched: the FX side of the analysis.

Units are switched by enabling or disabling their TensorQuantizers in place, so one module
serves every measurement; float outputs are computed once with every quantizer off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bevcc.device import to_device
from bevcc.quant.quantizer import TensorQuantizer
from bevcc.sensitivity.units import Unit


@dataclass
class FxEvaluator:
    module: torch.nn.Module
    batches: list[dict]  # evaluation batches: input arrays (and labels for task metrics)
    input_names: list[str]
    metric: object  # fn(outputs, reference, batches) -> float
    reference: list = field(default_factory=list)
    # where the module runs (bevcc/device.py): the caller keeps it there (running_on) while
    # this evaluator is used; batches move there one at a time, outputs come back to the CPU,
    # where the metrics (a plugin's too) read them
    device: str = "cpu"

    def __post_init__(self):
        with switched_quantizers(self.module, enabled=False):
            self.reference = self._outputs()

    def _outputs(self) -> list[tuple[torch.Tensor, ...]]:
        results = []
        self.module.eval()
        with torch.no_grad():
            for batch in self.batches:
                inputs = [
                    to_device(torch.from_numpy(batch[n]), self.device) for n in self.input_names
                ]
                out = self.module(*inputs)
                out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
                results.append(tuple(_on_cpu(o) for o in out))
        return results

    def score(self, quantized: bool = True, except_units: list[Unit] = ()) -> float:
        """The metric with every unit INT8 (`quantized`) or float, except `except_units`, which
        get the opposite."""
        with switched_quantizers(self.module, enabled=quantized, except_units=except_units):
            return float(self.metric(self._outputs(), self.reference, self.batches))


def _on_cpu(value):
    return value.cpu() if isinstance(value, torch.Tensor) else value


class switched_quantizers:
    """Context: every enabled TensorQuantizer switched on or off, restored afterwards."""

    def __init__(self, module, enabled: bool, except_units: list[Unit] = ()):
        self.quantizers = [q for q in module.modules() if isinstance(q, TensorQuantizer)]
        self.saved = [q.enabled for q in self.quantizers]
        self.enabled, self.module, self.except_units = enabled, module, except_units

    def __enter__(self):
        for q, was in zip(self.quantizers, self.saved, strict=True):
            q.enabled = self.enabled and was
        for unit in self.except_units:
            unit.set_enabled(self.module, not self.enabled)
        return self

    def __exit__(self, *exc):
        for q, was in zip(self.quantizers, self.saved, strict=True):
            q.enabled = was
