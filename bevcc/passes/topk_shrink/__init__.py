"""The `topk_shrink` pass (ONNX). Declared here for `bevcc passes` and pipeline checks, which
import no pass module."""

from bevcc.pass_info import PassInfo
from bevcc.passes.topk_shrink.options import TopkShrinkOptions

ONNX = PassInfo(
    name="topk_shrink",
    ir="onnx",
    impl="bevcc.passes.topk_shrink.onnx:TopkShrink",
    options=TopkShrinkOptions,
    summary=(
        "Make a sorted TopK whose outputs are only read through one leading Slice (an exported "
        "`argsort(...)[..., :k]`) a TopK of that k, within TensorRT's K limit (ONNX)."
    ),
)
PASSES = (ONNX,)
