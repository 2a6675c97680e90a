"""The module the `bevcc` entry point names: the reference's models and its task metric."""

import importlib.util

import bevcc


@bevcc.hookimpl
def bevcc_register_models(registry):
    from bevcc_bevfusion import deploy

    for attribute in ("camera_backbone", "camera_vtransform", "lidar_backbone", "fuser", "head"):
        registry.add_model(f"bevfusion_{attribute}", getattr(deploy.small, attribute))
    if (
        importlib.util.find_spec("spconv") is not None
    ):  # BEVFusion's lidar backbone at full width (docs/sparse.md)
        from bevcc_bevfusion.sparse_encoder import sparse_encoder

        registry.add_model("sparse_encoder", sparse_encoder)


@bevcc.hookimpl
def bevcc_register_metrics(registry):
    from bevcc_bevfusion.task_metric import bevfusion_map

    registry.add_metric("bevfusion_map", bevfusion_map)
