"""The module the `bevcc` entry point names: the nuScenes detection metrics.

Every command loads plugins, `bevcc passes` and `--help` included, so the metrics are registered
by a deferred load that runs when a command first reads the metrics, and are named here so
`bevcc plugins` lists them.
"""

import bevcc


@bevcc.hookimpl
def bevcc_register_metrics(registry):
    def load(registry):
        from bevcc_nuscenes.settings import nuscenes_map, nuscenes_nds

        registry.add_metric("nuscenes_nds", nuscenes_nds)
        registry.add_metric("nuscenes_map", nuscenes_map)

    registry.defer(load, metrics=["nuscenes_map", "nuscenes_nds"])
