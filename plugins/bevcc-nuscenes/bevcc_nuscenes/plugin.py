"""The module the `bevcc` entry point names: the nuScenes detection metrics."""

import bevcc


@bevcc.hookimpl
def bevcc_register_metrics(registry):
    from bevcc_nuscenes.settings import nuscenes_map, nuscenes_nds

    registry.add_metric("nuscenes_nds", nuscenes_nds)
    registry.add_metric("nuscenes_map", nuscenes_map)
