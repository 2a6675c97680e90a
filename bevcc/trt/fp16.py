"""What FP16 can hold, as TensorRT's strongly typed layers meet it: one place for the numbers the
strong_typing pass decides by and `bevcc lint` warns by.

A value beyond FP16_MAX becomes inf in an fp16 tensor; a nonzero value under FP16_MIN_NORMAL
keeps fewer significant bits the smaller it is (subnormal), and one under half the smallest
subnormal rounds to zero (flushes).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FLUSH_SHARE",
    "FP16_MAX",
    "FP16_MIN_NORMAL",
    "FP16_MIN_SUBNORMAL",
    "flushed_share",
    "overflows",
    "underflows",
]

FP16_MAX = 65504.0
FP16_MIN_NORMAL = 2.0**-14  # 6.1e-5
FP16_MIN_SUBNORMAL = 2.0**-24  # 6.0e-8: anything under half of it rounds to 0
# A weight whose nonzero values round to zero in fp16 more often than this loses part of what it
# computes: the layer stays fp32. (Normally distributed weights of std 0.01 lose under 1e-5.)
FLUSH_SHARE = 1e-3


def overflows(absmax: float) -> bool:
    return absmax > FP16_MAX


def underflows(absmax: float) -> bool:
    """A tensor all of whose values are subnormal in fp16 (and not all zero): every value keeps
    fewer than fp16's 11 significant bits, the smallest flush to zero."""
    return 0.0 < absmax < FP16_MIN_NORMAL


def flushed_share(values: np.ndarray) -> float:
    """Share of the nonzero values that fp16 rounds to zero."""
    values = np.abs(np.asarray(values, np.float64)).ravel()
    nonzero = values[values > 0]
    if nonzero.size == 0:
        return 0.0
    return float((nonzero < FP16_MIN_SUBNORMAL / 2).mean())
