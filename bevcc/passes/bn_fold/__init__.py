"""The `bn_fold` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo
from bevcc.passes.bn_fold.options import BnFoldOptions

FX = PassInfo(
    name="bn_fold",
    ir="fx",
    impl="bevcc.passes.bn_fold.fx:BatchNormFoldFx",
    options=BnFoldOptions,
    summary=(
        "Fold inference-mode BatchNorm into the preceding Conv/ConvTranspose/Linear or "
        "spconv sparse conv (FX)."
    ),
)
ONNX = PassInfo(
    name="bn_fold",
    ir="onnx",
    impl="bevcc.passes.bn_fold.onnx:BatchNormFoldOnnx",
    summary=(
        "Fold BatchNormalization into the preceding Conv/ConvTranspose/Gemm initializers (ONNX)."
    ),
)
PASSES = (FX, ONNX)
