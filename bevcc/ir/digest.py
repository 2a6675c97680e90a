"""Short content digests for tensors, used by IR dumps and fingerprints."""

from __future__ import annotations

import hashlib

import numpy as np

DIGEST_CHARS = 12


def array_digest(array: np.ndarray) -> str:
    """Digest of an array's dtype, shape and bytes; equal arrays give equal digests."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()[:DIGEST_CHARS]


def value_summary(array: np.ndarray) -> str:
    """How an IR dump (and so a golden file) shows a tensor: an exact digest for integers and
    booleans; for floats, three significant digits of the value (scalars) or of the mean
    magnitude. Computed floats (folded weights, calibrated scales) differ in their last bits
    between CPUs (AVX2 vs AVX-512 kernels), so an exact digest of them would tie a golden file
    to the machine that wrote it; numerics are tested against references, not by goldens."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        return f"#{array_digest(array)}"
    values = array.astype(np.float64)
    if values.size == 1:
        return f"={float(values.reshape(())):.3g}"
    return f"~{float(np.abs(values).mean()) if values.size else 0.0:.3g}"


def text_digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def shape_text(shape) -> str:
    if shape is None:
        return "?"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
