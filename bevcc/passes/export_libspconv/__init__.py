"""The `export_libspconv` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and checked against the declaration.
"""

from bevcc.pass_info import PassInfo
from bevcc.passes.export_libspconv.options import ExportSparseOptions

PASSES = (
    PassInfo(
        name="export_libspconv",
        ir="fx",
        produces="libspconv",
        impl="bevcc.passes.export_libspconv.fx:ExportLibspconv",
        options=ExportSparseOptions,
        summary=(
            "Lower an FX spconv backbone to the libspconv ONNX file (SparseConvolution, Add, ...)."
        ),
    ),
)
