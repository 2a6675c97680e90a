"""`nuscenes_nds` and `nuscenes_map` for the CLI: configured from environment variables.

They read the settings when called, not when registered, so `bevcc plugins` works without them.
"""

from __future__ import annotations

import os

from bevcc.errors import UsageError
from bevcc_nuscenes.metric import nuscenes_metric

DATAROOT = "BEVCC_NUSCENES_DATAROOT"  # the folder holding <version>/ (required)
DECODER = "BEVCC_NUSCENES_DECODER"  # module:function or file.py:function (required)
VERSION = "BEVCC_NUSCENES_VERSION"  # default v1.0-trainval
EVAL_SET = "BEVCC_NUSCENES_EVAL_SET"  # default val
CONFIG = "BEVCC_NUSCENES_CONFIG"  # a DetectionConfig JSON file; default detection_cvpr_2019
_BUILT: dict[tuple, object] = {}


def from_environment(score: str):
    """The metric fn for the current settings (built once per distinct settings)."""
    env = os.environ
    for name, what in (
        (DATAROOT, "the nuScenes dataroot"),
        (
            DECODER,
            ("the decoder, module:function, mapping (output, batch) to {sample_token: [box, ...]}"),
        ),
    ):
        if not env.get(name):
            raise UsageError(
                f"nuscenes_{score} needs {name}: set it to {what} (see "
                "plugins/bevcc-nuscenes/README.md)"
            )
    key = (
        score,
        env[DATAROOT],
        env[DECODER],
        env.get(VERSION, "v1.0-trainval"),
        env.get(EVAL_SET, "val"),
        env.get(CONFIG) or None,
    )
    if key not in _BUILT:
        _BUILT[key] = nuscenes_metric(
            key[1], key[2], score=score, version=key[3], eval_set=key[4], config=key[5]
        )
    return _BUILT[key]


def nuscenes_nds(outputs, reference, batches) -> float:
    return from_environment("nds")(outputs, reference, batches)


def nuscenes_map(outputs, reference, batches) -> float:
    return from_environment("map")(outputs, reference, batches)
