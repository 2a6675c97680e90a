"""Options of the `bn_fold` pass, free of heavy imports: `bevcc passes` and pipeline checks
read them without importing the pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class BnFoldOptions:
    sparse_bias: Literal["auto", "inside", "outside"] = field(
        default="auto",
        metadata={
            "help": "where a folded sparse conv's bias goes: inside the conv, outside (a "
            "SparseConvBias module after it, since spconv's CPU kernels reject an "
            "eval-mode conv bias), or auto (inside when the compile runs on CUDA, --device, "
            "else outside)"
        },
    )
