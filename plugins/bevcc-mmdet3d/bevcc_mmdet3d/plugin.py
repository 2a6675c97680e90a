"""The module the `bevcc` entry point names: trace rules for mmcv/mmdet3d layers and the models.

Every command loads plugins, `bevcc passes` and `--help` included, so this imports nothing heavy:
the rules and the models are registered by deferred loads that run when a compile first needs
them (their modules import torch), and are named here so `bevcc plugins` lists them.
"""

import importlib.util

import bevcc

# The torch classes the mmcv wrapper rule is registered for (wrapper_types.BASE_NAMES), and
# spconv's base of mmdet3d's sparse blocks, by the names the registry gives them (module.qualname).
WRAPPER_BASES = (
    "torch.nn.modules.conv.Conv2d",
    "torch.nn.modules.conv.Conv3d",
    "torch.nn.modules.conv.ConvTranspose2d",
    "torch.nn.modules.conv.ConvTranspose3d",
    "torch.nn.modules.pooling.MaxPool2d",
    "torch.nn.modules.pooling.MaxPool3d",
    "torch.nn.modules.linear.Linear",
)
SPARSE_BLOCK = "spconv.pytorch.modules.SparseModule"
MODELS = ("mmdet3d_resnet", "mmdet3d_second_fpn", "mmdet3d_sparse_encoder")  # models.REGISTERED


def _spconv_installed() -> bool:
    return importlib.util.find_spec("spconv") is not None  # finds it without importing it


@bevcc.hookimpl
def bevcc_register_leaf_modules(registry):
    sparse = _spconv_installed()  # no spconv: no sparse blocks to trace

    def load(registry):
        from bevcc_mmdet3d import block_tracing, wrapper_types

        for base in wrapper_types.base_types():
            registry.add_trace_rule(base, wrapper_types.trace_as_torch_base)
        if sparse:
            from spconv.pytorch import SparseModule

            registry.add_trace_rule(SparseModule, block_tracing.trace_sparse_block)

    registry.defer(load, trace_rules=[*WRAPPER_BASES, *([SPARSE_BLOCK] if sparse else [])])


@bevcc.hookimpl
def bevcc_register_models(registry):
    def load(registry):
        from bevcc_mmdet3d import models

        for name, builder in models.REGISTERED.items():
            registry.add_model(name, builder)

    registry.defer(load, models=MODELS)
