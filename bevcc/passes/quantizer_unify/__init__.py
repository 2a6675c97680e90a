"""The `quantizer_unify` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo
from bevcc.passes.quantizer_unify.options import FxUnifyOptions, UnifyOptions

FX = PassInfo(
    name="quantizer_unify",
    ir="fx",
    quantizes=True,
    impl="bevcc.passes.quantizer_unify.fx:QuantizerUnifyFx",
    options=FxUnifyOptions,
    summary=(
        "Share one quantizer per scale domain (multi-consumer tensors, Concat, Add, "
        "data-movement ops) so TensorRT inserts no Reformat layers (FX)."
    ),
)
ONNX = PassInfo(
    name="quantizer_unify",
    ir="onnx",
    quantizes=True,
    impl="bevcc.passes.quantizer_unify.onnx:QuantizerUnifyOnnx",
    options=UnifyOptions,
    summary=(
        "Share one scale per scale domain in a Q/DQ ONNX (any tool's), inserting Q/DQ "
        "on Add identity and Concat inputs, so TensorRT inserts no Reformat layers (ONNX)."
    ),
)
PASSES = (FX, ONNX)
