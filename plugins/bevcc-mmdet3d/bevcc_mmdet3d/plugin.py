"""The module the `bevcc` entry point names: trace rules for mmcv/mmdet3d layers and the models."""

import bevcc


@bevcc.hookimpl
def bevcc_register_leaf_modules(registry):
    from bevcc_mmdet3d import block_tracing, wrapper_types

    for base in wrapper_types.base_types():
        registry.add_trace_rule(base, wrapper_types.trace_as_torch_base)
    try:
        from spconv.pytorch import SparseModule
    except ImportError:  # no spconv: no sparse blocks to trace
        return
    registry.add_trace_rule(SparseModule, block_tracing.trace_sparse_block)


@bevcc.hookimpl
def bevcc_register_models(registry):
    from bevcc_mmdet3d import models

    for name, builder in models.REGISTERED.items():
        registry.add_model(name, builder)
