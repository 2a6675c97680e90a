"""Options of the `sensitivity_disable` pass, free of heavy imports: `bevcc passes` and pipeline checks
read them without importing the pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class SensitivityOptions:
    top_k: int = field(default=0, metadata={"help": "keep the K most sensitive units float"})
    min_sqnr_db: float | None = field(
        default=None,
        metadata={"help": "keep units float, most sensitive first, until SQNR vs float >= D dB"},
    )
    max_drop: float | None = field(
        default=None,
        metadata={"help": "keep units float until the task metric drops by at most this fraction"},
    )
    disable: str = field(
        default="",
        metadata={"help": "units/layers kept float: names or globs separated by commas or spaces"},
    )
    list: str = field(default="", metadata={"help": "a disable list (JSON) from an earlier run"})
    metric: str = field(
        default="sqnr",
        metadata={"help": "ranking metric: sqnr, cosine, or a plugin's (bevcc plugins lists them)"},
    )
    mode: Literal["both", "alone_quantized", "alone_float"] = field(
        default="both", metadata={"help": "measure each unit quantized alone, float alone, or both"}
    )
    eval_batches: int = field(default=4, metadata={"help": "calibration batches used to evaluate"})
    results: str = field(
        default="",
        metadata={
            "help": "JSONL file of per-unit results; an interrupted run resumes from it (default: "
            "sensitivity.jsonl next to the output)"
        },
    )
