"""The module the `bevcc` entry point names: the reference's models and its task metric.

Every command loads plugins, `bevcc passes` and `--help` included, so this imports nothing heavy:
models and metric are registered by deferred loads that run when a compile first needs them
(their modules import torch), and are named here so `bevcc plugins` lists them.
"""

import importlib.util

import bevcc

SUBNETS = ("camera_backbone", "camera_vtransform", "lidar_backbone", "fuser", "head")


@bevcc.hookimpl
def bevcc_register_models(registry):
    # BEVFusion's lidar backbone at full width (docs/sparse.md) needs spconv; found, not imported
    sparse = importlib.util.find_spec("spconv") is not None

    def load(registry):
        from bevcc_bevfusion import deploy

        for attribute in SUBNETS:
            registry.add_model(f"bevfusion_{attribute}", getattr(deploy.small, attribute))
        if sparse:
            from bevcc_bevfusion.sparse_encoder import sparse_encoder

            registry.add_model("sparse_encoder", sparse_encoder)

    names = [f"bevfusion_{attribute}" for attribute in SUBNETS]
    registry.defer(load, models=[*names, *(["sparse_encoder"] if sparse else [])])


@bevcc.hookimpl
def bevcc_register_metrics(registry):
    def load(registry):
        from bevcc_bevfusion.task_metric import bevfusion_map

        registry.add_metric("bevfusion_map", bevfusion_map)

    registry.defer(load, metrics=["bevfusion_map"])
