"""The `qdq_insert` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo
from bevcc.passes.qdq_insert.options import FxQdqOptions, OnnxQdqOptions

FX = PassInfo(
    name="qdq_insert",
    ir="fx",
    quantizes=True,
    impl="bevcc.passes.qdq_insert.fx:QdqInsertFx",
    options=FxQdqOptions,
    summary=(
        "Insert calibrated INT8 fake-quant quantizers on Conv/ConvTranspose/Linear/matmul "
        "inputs (per tensor) and weights (per channel) (FX)."
    ),
)
ONNX = PassInfo(
    name="qdq_insert",
    ir="onnx",
    quantizes=True,
    impl="bevcc.passes.qdq_insert.onnx:QdqInsertOnnx",
    options=OnnxQdqOptions,
    summary=(
        "Insert calibrated INT8 Q/DQ on Conv/ConvTranspose/Gemm/MatMul inputs (per "
        "tensor) and initializer weights (per channel), calibrated with onnxruntime (ONNX)."
    ),
)
PASSES = (FX, ONNX)
