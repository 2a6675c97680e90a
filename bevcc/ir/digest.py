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
