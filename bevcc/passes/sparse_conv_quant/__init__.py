"""The `sparse_conv_quant` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo
from bevcc.passes.sparse_conv_quant.options import SparseQuantOptions

FX = PassInfo(
    name="sparse_conv_quant",
    ir="fx",
    quantizes=True,
    impl="bevcc.passes.sparse_conv_quant.fx:SparseConvQuant",
    options=SparseQuantOptions,
    summary=(
        "Insert calibrated INT8 quantizers on spconv convolutions (input per tensor, "
        "weight per output channel) and sparse residual Adds; fp16 layers by name (FX)."
    ),
)
PASSES = (FX,)
