"""TensorRT's rule for fusing multi-head attention (MHA) in INT8, as data.

TensorRT fuses the chain MatMul(Q, K^T) -> Softmax -> MatMul(P, V) into one INT8 MHA kernel only
when Q/DQ sit before the first batched matmul, after the Softmax and after the second batched
matmul, and nowhere in between (developer guide, "MHA fusion",
https://docs.nvidia.com/deeplearning/tensorrt/developer-guide/index.html#mha-fusion, as quoted
in TensorRT issues #2981 and #4167; INT8 also needs head size 16, 32 or 64 and sequences of at
most 512). Between the first matmul and the Softmax a model may scale the scores (a Mul or Div
by a constant), add a bias or mask, and reshape them (Swin's window attention does all three):
those ops are part of the fused pattern and stay float. The probabilities are bounded by 1, and
TensorRT's INT8 MHA kernels take them at scale 1/127 (amax 1): a calibrated amax below 1 clips
a sharper attention met after calibration.
Nothing heavy is imported here: plugin declarations read SOFTMAX_AMAX on every command.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "PROBS_PATH_OPS",
    "SCORE_PATH_OPS",
    "SOFTMAX_AMAX",
    "ScorePathOp",
]


@dataclass(frozen=True)
class ScorePathOp:
    """An op allowed between the first matmul and the Softmax: which input carries the scores
    (the others are a constant scale, a bias or a mask) and why TensorRT's pattern admits it."""

    scores: tuple[int, ...]  # inputs that may carry the scores
    why: str


# What may lie on the score path, MatMul(Q, K^T) -> ... -> Softmax. Every Q/DQ found there, on
# the scores or on a bias/mask input, breaks the fusion.
SCORE_PATH_OPS: dict[str, ScorePathOp] = {
    "Reshape": ScorePathOp((0,), "data movement (windows, heads)"),
    "Transpose": ScorePathOp((0,), "data movement"),
    "Unsqueeze": ScorePathOp((0,), "data movement"),
    "Squeeze": ScorePathOp((0,), "data movement"),
    "Flatten": ScorePathOp((0,), "data movement"),
    "Identity": ScorePathOp((0,), "data movement"),
    "Cast": ScorePathOp((0,), "precision change of the scores"),
    "Mul": ScorePathOp((0, 1), "scaling by 1/sqrt(head size)"),
    "Div": ScorePathOp((0,), "scaling by sqrt(head size)"),
    "Add": ScorePathOp((0, 1), "relative-position bias or additive mask"),
    "Sub": ScorePathOp((0,), "additive mask"),
    "Where": ScorePathOp((1, 2), "boolean mask"),
}

# What may lie between the Softmax and the second matmul besides its Q/DQ: inference identities
PROBS_PATH_OPS = frozenset({"Identity", "Dropout"})

# the softmax-output amax TensorRT's INT8 MHA kernels assume (scale = 1/127)
SOFTMAX_AMAX = 1.0
