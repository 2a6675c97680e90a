"""Calibrators: statistics of the values a quantizer sees, reduced to amax.

`max` is bevcc's own (a running max of |x|, per tensor or per channel: nothing to get wrong).
The histogram methods (percentile, mse, entropy) are nvidia-modelopt's calibrators, imported only
when asked for (the import takes seconds): bevcc does not re-implement them.
"""

from __future__ import annotations

import contextlib

import torch

from bevcc.errors import UsageError

HISTOGRAM_METHODS = ("percentile", "mse", "entropy")
NAMES = ("max",) + tuple(f"histogram:{m}" for m in HISTOGRAM_METHODS)


def canonical(name: str) -> str:
    """'mse' -> 'histogram:mse'; unknown names are one UsageError."""
    name = name.strip()
    if name in HISTOGRAM_METHODS:
        name = f"histogram:{name}"
    if name not in NAMES:
        raise UsageError(f"unknown calibrator '{name}': use one of {', '.join(NAMES)}")
    return name


class MaxCalibrator:
    def __init__(self, axis: int | None):
        self.axis, self.amax, self.seen = axis, None, 0

    def collect(self, x: torch.Tensor) -> None:
        x = x.detach().abs().float()
        if self.axis is None:
            value = x.max() if x.numel() else torch.zeros((), device=x.device)
        else:
            dims = [d for d in range(x.dim()) if d != self.axis % x.dim()]
            value = x.amax(dim=dims) if dims else x
        self.amax = value if self.amax is None else torch.maximum(self.amax, value)
        self.seen += 1

    def compute_amax(self) -> torch.Tensor:
        return self.amax


class HistogramCalibrator:
    """modelopt's HistogramCalibrator, reduced with one method (per tensor only)."""

    def __init__(self, method: str, percentile: float):
        from modelopt.torch.quantization.calib import HistogramCalibrator as Impl

        self.method, self.percentile, self.seen = method, percentile, 0
        self.impl = Impl(num_bits=8, axis=None, unsigned=False)

    def collect(self, x: torch.Tensor) -> None:
        self.impl.collect(x.detach().float())
        self.seen += 1

    def compute_amax(self) -> torch.Tensor:
        options = {"percentile": self.percentile} if self.method == "percentile" else {}
        with _mse_argument_fix():
            amax = self.impl.compute_amax(self.method, **options)
        return torch.as_tensor(amax, dtype=torch.float32).reshape(())


@contextlib.contextmanager
def _mse_argument_fix():
    """modelopt 0.47's MSE search calls fake_tensor_quant(x, amax, num_bits, unsigned), but the
    third parameter is now `bias`: num_bits lands there and the search returns its first
    candidate whatever the data (amax 0.26 for N(0, 1)). Adapt the call while it runs, keeping
    modelopt's algorithm; a modelopt that fixed the call passes `bias` by keyword or 5+ args."""
    from modelopt.torch.quantization.calib import histogram

    original = histogram.fake_tensor_quant

    def adapted(inputs, amax, *args, **kwargs):
        if len(args) == 2 and not kwargs:  # (num_bits, unsigned), the broken positional call
            return original(inputs, amax, None, *args)
        return original(inputs, amax, *args, **kwargs)

    histogram.fake_tensor_quant = adapted
    try:
        yield
    finally:
        histogram.fake_tensor_quant = original


def make_calibrator(name: str, axis: int | None, percentile: float = 99.99):
    name = canonical(name)
    if name == "max":
        return MaxCalibrator(axis)
    if axis is not None:
        raise UsageError(f"calibrator {name} is per tensor; per-channel quantizers use max")
    return HistogramCalibrator(name.split(":", 1)[1], percentile)
