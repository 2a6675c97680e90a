"""BatchNorm folding arithmetic shared by the FX and ONNX passes (float64, framework-free).

y = gamma * (x - mean) / sqrt(var + eps) + beta  =  scale * x + shift, per output channel, so a
producer computing x = W * input + b becomes W' = scale * W (per output channel), b' = scale * b +
shift. Where the output channel sits in W depends on the layer.
"""

from __future__ import annotations

import numpy as np


def scale_shift(mean, var, eps: float, gamma=None, beta=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, shift) of an inference-mode BatchNorm; gamma/beta None if affine=False."""
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    scale = 1.0 / np.sqrt(var + eps)
    if gamma is not None:
        scale = scale * np.asarray(gamma, np.float64)
    shift = -mean * scale
    if beta is not None:
        shift = shift + np.asarray(beta, np.float64)
    return scale, shift


def fold_weight(weight: np.ndarray, scale: np.ndarray, layout: str, groups: int = 1) -> np.ndarray:
    """Multiply each output channel of `weight` by `scale`.

    layout "out_first": Conv, Linear, Gemm, spconv 2.x — weight [Cout, ...].
    layout "transposed": ConvTranspose — weight [Cin, Cout/groups, k...]; output channel
    g * Cout/groups + j lives at [g * Cin/groups : (g+1) * Cin/groups, j].
    layout "in_out": the weight's memory read as a [Cin, Cout] matrix, whatever its declared
    shape — how spconv 2.x computes 1x1 convs (spconv issue #450).
    """
    w = np.asarray(weight, np.float64)
    if layout == "out_first":
        return w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    if layout == "in_out":
        return (w.reshape(-1, scale.size) * scale).reshape(w.shape)
    if layout == "transposed":
        cin, cout_per_group = w.shape[0], w.shape[1]
        grouped = w.reshape((groups, cin // groups, cout_per_group) + w.shape[2:])
        factor = scale.reshape((groups, 1, cout_per_group) + (1,) * (w.ndim - 2))
        return (grouped * factor).reshape(w.shape)
    raise ValueError(f"unknown weight layout {layout!r}")


def fold_bias(bias, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """b' = scale * b + shift; a missing bias counts as zero."""
    if bias is None:
        return shift.copy()
    return np.asarray(bias, np.float64) * scale + shift
