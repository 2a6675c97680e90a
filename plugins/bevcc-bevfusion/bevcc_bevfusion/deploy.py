"""What `bevfusion.toml` names: each deployable subnet as (module, example inputs), and its
calibration batches, for both presets.

    bevcc_bevfusion.deploy:small.fuser          the trained small model's fuser + decoder
    bevcc_bevfusion.deploy:small.fuser_calib    its inputs on the calibration scenes
    bevcc_bevfusion.deploy:full.camera_backbone the full-size architecture (seeded weights)

Calibration batches are the float model's tensors at each file's boundary, as the deployment
feeds them: the camera BEV comes from the float camera files, the lidar BEV from the float lidar
backbone (the way CUDA-BEVFusion's ptq.py calibrates the whole model in one float pass).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import torch
from bevcc_bevfusion.dataset import CALIB_SCENES, load_scene
from bevcc_bevfusion.model import SUBNETS, BEVFusion, scene_inputs
from bevcc_bevfusion.presets import FULL, SMALL, Preset

from bevcc.progress import track

WEIGHTS = Path(__file__).parent / "weights" / "bevfusion_small.pt"


def build_model(preset: Preset, weights: Path | None) -> BEVFusion:
    """The float reference in eval mode: shipped weights, or a seeded init with realistic BN
    statistics when there are none (the full-size architecture)."""
    from bevcc.plugins import get_registry
    from bevcc.reference import seeded

    get_registry()  # bevcc's correct spconv CPU ops and quiet spconv
    if weights is None:
        model, _ = seeded(lambda: BEVFusion(preset), seed=0)
    else:
        model = BEVFusion(preset)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    return model.eval()


class Deployment:
    def __init__(self, preset: Preset, weights: Path | None, calib_scenes: int):
        self.preset, self.weights, self.calib_scenes = preset, weights, calib_scenes

    @cached_property
    def model(self) -> BEVFusion:
        return build_model(self.preset, self.weights)

    @cached_property
    def boundaries(self) -> list[dict]:
        """Every subnet's float inputs and outputs on each calibration scene."""
        records = []
        with torch.no_grad():
            for i in track(range(self.calib_scenes), "calibration scenes", unit="scene"):
                record = {}
                self.model(*scene_inputs(load_scene("calib", i, self.preset)), record)
                records.append(record)
        return records

    def subnet(self, file: str):
        attribute = {v: k for k, v in SUBNETS.items()}[file]
        return getattr(self.model, attribute), self.boundaries[0][file][0]

    def batches(self, file: str):
        return [record[file][0] for record in self.boundaries]

    # the callables the config names: one builder and one calibration source per file
    def camera_backbone(self):
        return self.subnet("camera.backbone")

    def camera_backbone_calib(self):
        return self.batches("camera.backbone")

    def camera_vtransform(self):
        return self.subnet("camera.vtransform")

    def camera_vtransform_calib(self):
        return self.batches("camera.vtransform")

    def lidar_backbone(self):
        return self.subnet("lidar.backbone.xyz")

    def lidar_backbone_calib(self):
        return self.batches("lidar.backbone.xyz")

    def fuser(self):
        return self.subnet("fuser")

    def fuser_calib(self):
        return self.batches("fuser")

    def head(self):
        return self.subnet("head.bbox")

    def head_calib(self):
        return self.batches("head.bbox")


small = Deployment(SMALL, WEIGHTS, CALIB_SCENES)
full = Deployment(FULL, None, calib_scenes=2)
