"""The `sensitivity_disable` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo
from bevcc.passes.sensitivity_disable.options import SensitivityOptions

FX = PassInfo(
    name="sensitivity_disable",
    ir="fx",
    quantizes=True,
    impl="bevcc.passes.sensitivity_disable.fx:SensitivityDisable",
    options=SensitivityOptions,
    summary=(
        "Rank quantized units by the accuracy their INT8 costs and keep the worst float "
        "(top_k, min_sqnr_db, max_drop or explicit names); writes a report (FX)."
    ),
)
ONNX = PassInfo(
    name="sensitivity_disable",
    ir="onnx",
    quantizes=True,
    impl="bevcc.passes.sensitivity_disable.onnx:SensitivityDisableOnnx",
    options=SensitivityOptions,
    summary=(
        "Rank a Q/DQ file's units (scale domains with their layers' weights) by the "
        "accuracy their INT8 costs, measured by onnxruntime, and remove the worst ones' "
        "Q/DQ (top_k, min_sqnr_db, max_drop or explicit names); writes a report (ONNX)."
    ),
)
PASSES = (FX, ONNX)
