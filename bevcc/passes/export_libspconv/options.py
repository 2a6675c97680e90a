"""Options of the `export_libspconv` pass, free of heavy imports: `bevcc passes` and pipeline checks
read them without importing the pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

OUTPUT_BOUND = 200000


@dataclass
class ExportSparseOptions:
    order: Literal["xyz", "zyx"] = field(
        default="xyz",
        metadata={
            "help": "coordinate order of the file (when it differs from model_order, kernel/stride/"
            "padding/dilation, spatial shapes and the weight's kernel axes are reversed)"
        },
    )
    model_order: Literal["xyz", "zyx"] = field(
        default="xyz",
        metadata={
            "help": "coordinate order the model's voxel coordinates and sparse_shape use (mmdet3d's "
            "SparseEncoder: zyx)"
        },
    )
    output_bound: int = field(
        default=OUTPUT_BOUND, metadata={"help": "max output voxels per layer"}
    )
