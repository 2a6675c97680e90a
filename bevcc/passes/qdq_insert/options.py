"""Options of the `qdq_insert` pass, free of heavy imports: `bevcc passes` and pipeline checks
read them without importing the pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bevcc.quant.ranges import ranges_field


@dataclass
class QdqOptions:
    calibrator: str = field(
        default="max",
        metadata={
            "help": "activation calibrator: max, histogram:percentile, histogram:mse, "
            "histogram:entropy (histograms need the modelopt extra)"
        },
    )
    percentile: float = field(default=99.99, metadata={"help": "for histogram:percentile"})
    per_channel: bool = field(default=True, metadata={"help": "per-output-channel weight scales"})
    conv_transpose_axis: Literal[0, 1] = field(
        default=0,
        metadata={"help": "ConvTranspose weight axis for per-channel scales: 0 (TensorRT) or 1"},
    )
    config: str = field(
        default="",
        metadata={
            "help": "quant config file (.toml/.yaml): per-op defaults and name/glob overrides"
        },
    )
    max_batches: int = field(
        default=0, metadata={"help": "calibrate on at most N batches (0: all)"}
    )


@dataclass
class FxQdqOptions(QdqOptions):
    ranges: str = ranges_field()


@dataclass
class OnnxQdqOptions(QdqOptions):
    calib_memory_mb: int = field(
        default=512,
        metadata={"help": "most megabytes of intermediate tensors fetched per onnxruntime run"},
    )
