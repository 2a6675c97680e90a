"""Options of the `simplify` pass, free of heavy imports: `bevcc passes` and pipeline checks
read them without importing the pass."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SimplifyOptions:
    max_constant_mb: float = field(
        default=256.0,
        metadata={
            "help": "a computed tensor larger than this (MiB) stays computed rather than "
            "stored in the file"
        },
    )
    max_rounds: int = field(
        default=8,
        metadata={
            "help": "fold rounds at most; each round's constants give the next round's "
            "shape inference more to follow"
        },
    )

    def __post_init__(self):
        if not self.max_constant_mb > 0:
            raise ValueError(f"max_constant_mb must be above 0, got {self.max_constant_mb}")
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {self.max_rounds}")
