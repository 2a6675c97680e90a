"""The `cleanup` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo
from bevcc.passes.cleanup.options import CleanupOptions

ONNX = PassInfo(
    name="cleanup",
    ir="onnx",
    impl="bevcc.passes.cleanup.onnx:Cleanup",
    options=CleanupOptions,
    summary=("Remove ONNX nodes, initializers and (optionally) inputs that no output depends on."),
)
PASSES = (ONNX,)
