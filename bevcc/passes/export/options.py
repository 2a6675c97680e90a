"""Options of the `export` pass, free of heavy imports: `bevcc passes` and pipeline checks
read them without importing the pass."""

from __future__ import annotations

from dataclasses import dataclass, field

# Per-channel Q/DQ (the `axis` attribute) needs opset 13. bevcc.ir.onnx upgrades older input files
# to the same opset; it is stated here too so that checking options imports no onnx, and a test
# keeps the two equal.
MIN_OPSET = 13


@dataclass(frozen=True)
class ExportOptions:
    opset: int = field(default=17, metadata={"help": "ONNX opset to emit (>= 13)"})
    dynamic_batch: bool = field(
        default=False, metadata={"help": "make axis 0 of every input and output symbolic"}
    )

    def __post_init__(self):
        if self.opset < MIN_OPSET:
            raise ValueError(
                f"opset {self.opset} is below {MIN_OPSET}, which per-channel Q/DQ needs"
            )
