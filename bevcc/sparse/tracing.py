"""How FX traces spconv models: spconv layers are leaves, SparseSequential is unrolled, and the
SparseConvTensor constructor is one node."""

from __future__ import annotations

import importlib.util
import logging
import warnings

from torch import fx

from bevcc.sparse.conv_bias import SparseConvBias


def spconv_installed() -> bool:
    return importlib.util.find_spec("spconv") is not None


def leaf_types() -> tuple[type, ...]:
    """spconv's own layers; user SparseModule subclasses (basic blocks) stay traceable."""
    import spconv.pytorch as sp
    from spconv.pytorch import pool, tables
    from spconv.pytorch.conv import SparseConvolution
    from spconv.pytorch.modules import SparseBatchNorm, SparseReLU

    return (
        SparseConvolution,
        pool.SparseMaxPool,
        pool.SparseAvgPool,
        pool.SparseGlobalMaxOrAvgPool,
        sp.ToDense,
        sp.RemoveGrid,
        sp.SparseIdentity,
        tables.JoinTable,
        tables.AddTable,
        tables.AddTableMisaligned,
        tables.ConcatTable,
        SparseBatchNorm,
        SparseReLU,
    )


def trace_sparse_sequential(seq, x):
    """SparseSequential.forward as it runs on a SparseConvTensor, written for proxies.

    spconv children take the sparse tensor; any other child maps its features. After a ToDense
    (or on a dense input) children get the tensor itself, as SparseSequential does.
    """
    from spconv.pytorch import ToDense
    from spconv.pytorch.modules import is_spconv_module

    sparse = _looks_sparse(x)
    for child in seq._modules.values():
        if is_spconv_module(child) or not sparse:
            x = child(x)
            sparse = sparse and not isinstance(child, ToDense)
        else:
            x = x.replace_feature(child(x.features))
    return x


def _looks_sparse(x) -> bool:
    node = getattr(x, "node", None)
    if not isinstance(node, fx.Node):
        return hasattr(x, "replace_feature")
    if node.op == "call_method" and node.target == "dense":
        return False
    if node.op == "call_module":  # after a dense layer (or ToDense) the value is dense
        module = x.tracer.root.get_submodule(node.target)
        return type(module).__module__.startswith("spconv.") and type(module).__name__ != "ToDense"
    return True


class _DropFxTracingNotice(logging.Filter):
    """torch logs a notice when anything calls is_fx_tracing(); spconv does on every conv."""

    def filter(self, record):
        return "is_fx_tracing will return true" not in record.getMessage()


def _quiet_spconv_noise() -> None:
    """Two messages spconv 2.3.8 triggers on every run that no bevcc user can act on."""
    warnings.filterwarnings(
        "ignore",
        message="Using a non-tuple sequence for multidimensional",
        category=UserWarning,
        module="spconv",
    )
    logger = logging.getLogger("torch.fx._symbolic_trace")
    if not any(isinstance(f, _DropFxTracingNotice) for f in logger.filters):
        logger.addFilter(_DropFxTracingNotice())


def register(registry) -> None:
    """Called by the built-in plugin. Installs the CPU kernel fix (see cpu_ops)."""
    registry.add_leaf_module(SparseConvBias)
    if not spconv_installed():
        return
    try:
        from spconv.pytorch import SparseConvTensor, SparseSequential

        from bevcc.sparse import cpu_ops

        types = leaf_types()
        cpu_ops.install()
        _quiet_spconv_noise()
    except Exception as exc:  # noqa: BLE001 - a broken optional extra must not break bevcc
        warnings.warn(
            f"spconv is installed but failed to import ({exc}); sparse models cannot "
            f"be compiled: reinstall with pip install 'bevcc[spconv]'",
            stacklevel=2,
        )
        return
    for module_type in types:
        registry.add_leaf_module(module_type)
    registry.add_trace_rule(SparseSequential, trace_sparse_sequential)
    registry.add_leaf_function(SparseConvTensor)
