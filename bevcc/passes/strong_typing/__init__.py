"""The `strong_typing` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo
from bevcc.passes.strong_typing.options import StrongTypingOptions

ONNX = PassInfo(
    name="strong_typing",
    ir="onnx",
    types=True,
    impl="bevcc.passes.strong_typing.onnx:StrongTyping",
    options=StrongTypingOptions,
    summary=(
        "Type the file for TensorRT's strong typing: float layers compute in fp16 (weights, "
        "activations and Q/DQ scales), except those whose calibrated ranges or weights do not "
        "fit fp16, which stay fp32 with the reason (ONNX)."
    ),
)
PASSES = (ONNX,)
