"""The module the `bevcc` entry point names: hook implementations only.

Every command loads plugins, `bevcc passes` and `--help` included, so this imports nothing heavy:
the passes are declared (PassInfo, options from options.py) and imported when a pipeline runs
them; the model and the leaf function are registered by a deferred load that runs when a compile
first needs them, and are named here so `bevcc plugins` lists them.
"""

import bevcc
from bevcc.pass_info import PassInfo
from bevcc_swin.options import AttentionQdqOptions, MhaCheckOptions

PASSES = (
    PassInfo(
        name="attention_qdq",
        ir="fx",
        impl="bevcc_swin.attention_qdq:AttentionQdq",
        options=AttentionQdqOptions,
        quantizes=True,
        summary=(
            "Make attention TensorRT-MHA-ready: float scores between Q.K^T and Softmax, "
            "softmax output quantized with a fixed amax of 1 (FX; after quantizer_unify)."
        ),
    ),
    PassInfo(
        name="attention_qdq",
        ir="onnx",
        impl="bevcc_swin.attention_qdq_onnx:AttentionQdqOnnx",
        options=AttentionQdqOptions,
        quantizes=True,
        summary=(
            "Make a Q/DQ file's attention TensorRT-MHA-ready: no Q/DQ between Q.K^T and "
            "Softmax, softmax output quantized at softmax_amax/127 (ONNX, any tool's file; "
            "after quantizer_unify)."
        ),
    ),
    PassInfo(
        name="mha_check",
        ir="onnx",
        impl="bevcc_swin.mha_check:MhaCheck",
        options=MhaCheckOptions,
        summary=(
            "Fail unless every quantized attention has no Q/DQ between Q.K^T and Softmax and "
            "a softmax-output scale of amax/127 (ONNX; changes nothing)."
        ),
    ),
)


@bevcc.hookimpl
def bevcc_register_passes(registry):
    for info in PASSES:
        registry.add_pass(info)


@bevcc.hookimpl
def bevcc_register_models(registry):
    def load(registry):
        from bevcc_swin.reference import swin_tiny_camera  # torch

        registry.add_model("swin_tiny_camera", swin_tiny_camera)

    registry.defer(load, models=["swin_tiny_camera"])


@bevcc.hookimpl
def bevcc_register_leaf_modules(registry):
    def load(registry):
        from bevcc_swin.windows import shifted_window_mask  # torch

        registry.add_leaf_function(shifted_window_mask)

    registry.defer(load, leaf_functions=["bevcc_swin.windows.shifted_window_mask"])
