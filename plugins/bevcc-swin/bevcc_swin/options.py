"""The passes' options, in a module of their own: plugin.py declares the passes with them on
every command (`bevcc passes` lists them, pipelines are checked against them), and this imports
nothing heavy; the pass modules import torch and onnx."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bevcc.trt.mha import SOFTMAX_AMAX


@dataclass(frozen=True)
class AttentionQdqOptions:
    softmax_amax: float | None = field(
        default=SOFTMAX_AMAX,
        metadata={
            "help": "fixed amax of the softmax-output quantizer (scale = amax/127); none keeps the "
            "calibrated one"
        },
    )
    float_scores: bool = field(
        default=True,
        metadata={
            "help": "remove quantizers between the first matmul and the softmax (bias/mask Adds), "
            "as TensorRT's MHA fusion requires"
        },
    )

    def __post_init__(self):
        amax = self.softmax_amax
        if amax is not None and not (math.isfinite(amax) and 0 < amax <= 1):
            raise ValueError(
                f"softmax_amax={amax} is outside (0, 1]: softmax outputs lie in "
                "[0, 1]; write attention_qdq{softmax_amax=1.0} or none"
            )


@dataclass(frozen=True)
class MhaCheckOptions:
    softmax_amax: float | None = field(
        default=SOFTMAX_AMAX,
        metadata={
            "help": "the softmax-output amax the file must use (scale = amax/127); none skips it"
        },
    )

    def __post_init__(self):
        amax = self.softmax_amax
        if amax is not None and not (math.isfinite(amax) and 0 < amax <= 1):
            raise ValueError(
                f"softmax_amax={amax} is outside (0, 1]; write "
                "mha_check{softmax_amax=1.0} or none"
            )


def attention_report(stats: dict, softmax_amax) -> str:
    """The line both attention_qdq passes (FX and ONNX) print for what they did."""
    return (
        f"attention blocks {stats['attention']}: removed {stats['score_quantizers']} "
        f"score-path quantizers, fixed {stats['softmax_fixed']} softmax quantizers at "
        f"amax {softmax_amax}"
    )
