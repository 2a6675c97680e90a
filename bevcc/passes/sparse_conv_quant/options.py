"""Options of the `sparse_conv_quant` pass, free of heavy imports: `bevcc passes` and pipeline checks
read them without importing the pass."""

from __future__ import annotations

from dataclasses import dataclass, field

from bevcc.quant.ranges import ranges_field


@dataclass
class SparseQuantOptions:
    fp16: str = field(
        default="first",
        metadata={
            "help": "sparse convs (module names) and residual Adds (node names, e.g. add_7) kept "
            "fp16: names or globs separated by commas or spaces (quote the value), 'first' "
            "for the first sparse conv, '' for none"
        },
    )
    calibrator: str = field(
        default="max", metadata={"help": "activation calibrator (as qdq_insert)"}
    )
    percentile: float = field(default=99.99, metadata={"help": "for histogram:percentile"})
    max_batches: int = field(default=0, metadata={"help": "calibrate on at most N batches"})
    fp16_weights: bool = field(
        default=True,
        metadata={
            "help": "round sparse conv weights and biases to fp16 first, as the libspconv file "
            "stores them, so the fake-quant model computes what the file computes"
        },
    )
    ranges: str = ranges_field()
