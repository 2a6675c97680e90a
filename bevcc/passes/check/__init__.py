"""The `check` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and checked against the declaration.
"""

from bevcc.pass_info import PassInfo

PASSES = (
    PassInfo(
        name="check",
        ir="onnx",
        impl="bevcc.passes.check.onnx:Check",
        summary=(
            "Validate the ONNX graph with onnx.checker and strict shape inference (even "
            "with --no-verify)."
        ),
    ),
)
