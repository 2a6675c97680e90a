"""The `check` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo

ONNX = PassInfo(
    name="check",
    ir="onnx",
    impl="bevcc.passes.check.onnx:Check",
    summary=(
        "Validate the ONNX graph with onnx.checker and strict shape inference (even "
        "with --no-verify)."
    ),
)
PASSES = (ONNX,)
