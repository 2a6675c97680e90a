"""What the built-in plugin adds for tracing, evaluation and `bevcc compile NAME`: FX leaf modules,
trace rules, metrics and models. Their modules import torch (and spconv), which costs seconds, so
the plugin defers them (Registry.defer) and names them here for `bevcc plugins`. A test checks
these names against what the loaders below register."""

from __future__ import annotations

import importlib.util

_QUANT_LAYERS = (
    "QuantConv1d",
    "QuantConv2d",
    "QuantConv3d",
    "QuantConvTranspose1d",
    "QuantConvTranspose2d",
    "QuantConvTranspose3d",
    "QuantLinear",
)
# bevcc.sparse.tracing.leaf_types(), by the names their classes report (module.qualname)
_SPCONV_LEAF_MODULES = (
    "spconv.pytorch.RemoveGrid",
    "spconv.pytorch.ToDense",
    "spconv.pytorch.conv.SparseConvolution",
    "spconv.pytorch.modules.SparseBatchNorm",
    "spconv.pytorch.modules.SparseIdentity",
    "spconv.pytorch.modules.SparseReLU",
    "spconv.pytorch.pool.SparseAvgPool",
    "spconv.pytorch.pool.SparseGlobalMaxOrAvgPool",
    "spconv.pytorch.pool.SparseMaxPool",
    "spconv.pytorch.tables.AddTable",
    "spconv.pytorch.tables.AddTableMisaligned",
    "spconv.pytorch.tables.ConcatTable",
    "spconv.pytorch.tables.JoinTable",
)


def spconv_installed() -> bool:
    """As bevcc.sparse.tracing.spconv_installed, which cannot be imported without torch."""
    return importlib.util.find_spec("spconv") is not None


def tracing_names() -> dict[str, list[str]]:
    leaf_modules = [
        "bevcc.quant.quantizer.TensorQuantizer",
        "bevcc.sparse.conv_bias.SparseConvBias",
        *(f"bevcc.quant.modules.{name}" for name in _QUANT_LAYERS),
    ]
    if not spconv_installed():
        return {"leaf_modules": leaf_modules}
    return {
        "leaf_modules": [*leaf_modules, *_SPCONV_LEAF_MODULES],
        "trace_rules": ["spconv.pytorch.modules.SparseSequential"],
        "leaf_functions": ["spconv.pytorch.core.SparseConvTensor"],
    }


def register_tracing(registry) -> None:
    from bevcc.quant.modules import QUANT_CLASSES
    from bevcc.quant.quantizer import TensorQuantizer
    from bevcc.sparse import tracing

    # Models that already hold bevcc quantizers (QAT checkpoints) trace as they were built.
    registry.add_leaf_module(TensorQuantizer)
    for quant_class in QUANT_CLASSES.values():
        registry.add_leaf_module(quant_class)
    tracing.register(registry)  # spconv's layers, and its CPU kernel fix


METRIC_NAMES = ["cosine", "sqnr"]


def register_metrics(registry) -> None:
    from bevcc.sensitivity.metrics import BUILTIN

    for name, fn in BUILTIN.items():
        registry.add_metric(name, fn)


def model_names() -> list[str]:
    return ["tiny_cnn", "tiny_sparse"] if spconv_installed() else ["tiny_cnn"]


def register_models(registry) -> None:
    from bevcc.reference.tiny_cnn import tiny_cnn

    registry.add_model("tiny_cnn", tiny_cnn)
    if spconv_installed():
        from bevcc.reference.tiny_sparse import tiny_sparse

        registry.add_model("tiny_sparse", tiny_sparse)
