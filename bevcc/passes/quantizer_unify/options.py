"""Options of the `quantizer_unify` pass, free of heavy imports: `bevcc passes` and pipeline checks
read them without importing the pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bevcc.quant.ranges import ranges_field


@dataclass
class UnifyOptions:
    add: Literal["residual", "shared"] = field(
        default="residual",
        metadata={
            "help": "Add inputs: residual (quantize the identity input only, so TensorRT fuses the "
            "conv branch) or shared (all inputs one quantizer)"
        },
    )
    concat_inputs: bool = field(
        default=True,
        metadata={"help": "put the shared quantizer on every input of a quantized Concat"},
    )


@dataclass
class FxUnifyOptions(UnifyOptions):
    ranges: str = ranges_field()
