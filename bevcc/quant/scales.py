"""amax -> scale for symmetric INT8, and the rules every emitted scale obeys.

scale = amax / 127 with zero point 0 and range [-128, 127]. A zero amax (a dead channel, an
all-zero activation) would give a zero scale, which TensorRT rejects ("Invalid weight scales"), so
amax is floored at AMAX_FLOOR and the floored places are reported. Any 0 < amax < floor is raised
to the floor too: such a channel holds values below 1e-6 that quantize to zero either way.
"""

from __future__ import annotations

import numpy as np

QMIN, QMAX = -128, 127
AMAX_FLOOR = 1e-6


def floor_amax(amax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(floored amax, mask of floored entries). Non-finite amax is a bug upstream: raise."""
    amax = np.asarray(amax, np.float64)
    if not np.isfinite(amax).all():
        raise ValueError("amax is not finite (NaN or inf reached a calibrator)")
    floored = amax < AMAX_FLOOR
    return np.where(floored, AMAX_FLOOR, amax), floored


def scale_of(amax, num_bits: int = 8) -> np.ndarray:
    """float32 amax / 127 in float32: the exact arithmetic of the PyTorch fake-quant model, so
    both IR paths and onnxruntime agree bit for bit."""
    return np.asarray(amax, np.float32) / np.float32(2 ** (num_bits - 1) - 1)


def bad_scale(scale) -> bool:
    scale = np.asarray(scale)
    return bool(scale.size == 0 or not np.isfinite(scale).all() or (scale <= 0).any())
