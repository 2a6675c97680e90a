"""Options of the `strong_typing` pass, free of heavy imports: `bevcc passes` and pipeline checks
read them without importing the pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class StrongTypingOptions:
    io: Literal["fp32", "fp16"] = field(
        default="fp32",
        metadata={
            "help": "type of the file's float inputs and outputs: fp32 (Casts at the boundary, "
            "the interface stays as exported) or fp16"
        },
    )
    keep_fp32: str = field(
        default="",
        metadata={
            "help": "node names (comma-separated regular expressions) that stay fp32 whatever "
            "their ranges"
        },
    )
    max_batches: int = field(
        default=8,
        metadata={"help": "calibration batches run to find each tensor's range (0: all of them)"},
    )
