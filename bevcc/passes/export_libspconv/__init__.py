"""The `export_libspconv` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo
from bevcc.passes.export_libspconv.options import ExportSparseOptions

FX = PassInfo(
    name="export_libspconv",
    ir="fx",
    produces="libspconv",
    impl="bevcc.passes.export_libspconv.fx:ExportLibspconv",
    options=ExportSparseOptions,
    summary=(
        "Lower an FX spconv backbone to the libspconv ONNX file (SparseConvolution, Add, ...)."
    ),
)
PASSES = (FX,)
