"""Options of the `topk_shrink` pass (none), free of heavy imports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopkShrinkOptions:
    pass
