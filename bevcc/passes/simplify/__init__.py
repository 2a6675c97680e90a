"""The `simplify` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo
from bevcc.passes.simplify.options import SimplifyOptions

ONNX = PassInfo(
    name="simplify",
    ir="onnx",
    impl="bevcc.passes.simplify.onnx:Simplify",
    options=SimplifyOptions,
    summary=(
        "Fold what the file's fixed input shapes make constant (shape arithmetic, constant "
        "subgraphs, evaluated by onnxruntime) and drop what becomes dead; Q/DQ nodes are never "
        "folded (ONNX)."
    ),
)
PASSES = (ONNX,)
