"""The `export` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo
from bevcc.passes.export.options import ExportOptions

FX = PassInfo(
    name="export",
    ir="fx",
    produces="onnx",
    impl="bevcc.passes.export.fx:Export",
    options=ExportOptions,
    summary="Lower FX to ONNX with torch.onnx.export; fake-quant ops become Q/DQ pairs.",
)
PASSES = (FX,)
