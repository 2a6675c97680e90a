"""Options of the `cleanup` pass, free of heavy imports: `bevcc passes` and pipeline checks
read them without importing the pass."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CleanupOptions:
    remove_unused_inputs: bool = field(
        default=False, metadata={"help": "also drop graph inputs no node reads"}
    )
