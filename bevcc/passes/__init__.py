"""The built-in passes, registered through the same hooks as any plugin (plugin name `bevcc`).

Every hook here imports nothing heavy: passes are registered by their declarations (each pass
folder's __init__), and what needs torch is deferred until a compile reads it (_runtime).
"""

from bevcc import hookimpl
from bevcc.passes import (
    _runtime,
    bn_fold,
    check,
    cleanup,
    dce,
    export,
    export_libspconv,
    qdq_insert,
    quantizer_unify,
    sensitivity_disable,
    simplify,
    sparse_conv_quant,
    strong_typing,
    topk_shrink,
)

_FOLDERS = (
    bn_fold,
    check,
    cleanup,
    dce,
    export,
    export_libspconv,
    qdq_insert,
    quantizer_unify,
    sensitivity_disable,
    simplify,
    sparse_conv_quant,
    strong_typing,
    topk_shrink,
)
DECLARED = tuple(info for folder in _FOLDERS for info in folder.PASSES)
_INPUTS = {"fx": "a Python model", "onnx": "an .onnx file"}


@hookimpl
def bevcc_register_passes(registry):
    for info in DECLARED:
        if not info.is_conversion():
            registry.add_pass(info)


@hookimpl
def bevcc_register_backends(registry):
    for info in DECLARED:
        if info.is_conversion():
            registry.add_backend(info)


@hookimpl
def bevcc_register_pipelines(registry):
    registry.add_pipeline(
        "default-fx",
        "fx(dce),export,onnx(cleanup,check)",
        "what `bevcc compile` runs on a Python model when no pipeline is given",
    )
    registry.add_pipeline(
        "default-onnx",
        "onnx(simplify,cleanup,check)",
        "what `bevcc compile` runs on an .onnx file when no pipeline is given",
    )
    # `bevcc sensitivity`: the steps before the last are its default --prefix, the last step is
    # the analysis, which gets the command's budget options. An .onnx file is simplified first:
    # a raw export's shape arithmetic would be calibrated and evaluated on every batch.
    for ir in ("fx", "onnx"):
        first = "simplify," if ir == "onnx" else ""
        registry.add_pipeline(
            f"sensitivity-{ir}",
            f"{ir}({first}bn_fold,qdq_insert,quantizer_unify,sensitivity_disable)",
            f"what `bevcc sensitivity` runs on {_INPUTS[ir]}",
        )


@hookimpl
def bevcc_register_metrics(registry):
    registry.defer(_runtime.register_metrics, metrics=_runtime.METRIC_NAMES)


@hookimpl
def bevcc_register_models(registry):
    registry.defer(_runtime.register_models, models=_runtime.model_names())


@hookimpl
def bevcc_register_leaf_modules(registry):
    registry.defer(_runtime.register_tracing, **_runtime.tracing_names())
