"""The whole BEVFusion reference: the five deployable subnets and the runtime glue between them
(voxelization, BEV pool), run exactly in the deployment's order."""

from __future__ import annotations

import torch
from bevcc_bevfusion.bevpool import BEVPool
from bevcc_bevfusion.camera import CameraBackbone, CameraVTransform
from bevcc_bevfusion.fuser import FuserDecoder
from bevcc_bevfusion.head import TransFusionHead
from bevcc_bevfusion.lidar import lidar_backbone, voxelize
from bevcc_bevfusion.presets import Preset
from torch import nn

# attribute name -> deployed file name (CUDA-BEVFusion's)
SUBNETS = {
    "camera_backbone": "camera.backbone",
    "camera_vtransform": "camera.vtransform",
    "lidar_backbone": "lidar.backbone.xyz",
    "fuser": "fuser",
    "head": "head.bbox",
}


class BEVFusion(nn.Module):
    def __init__(self, preset: Preset):
        super().__init__()
        self.preset = preset
        self.camera_backbone = CameraBackbone(preset)
        self.camera_vtransform = CameraVTransform(preset)
        self.lidar_backbone = lidar_backbone(preset)
        self.fuser = FuserDecoder(preset)
        self.head = TransFusionHead(preset)
        self.bev_pool = BEVPool(preset)

    def forward(self, images, depth, points, boundaries: dict | None = None):
        """images [6, 3, H, W], depth [6, 1, H, W], points [P, 5] -> head outputs (a tuple).

        `boundaries`, when given, receives every subnet's inputs and outputs by file name."""
        probs, features = self.camera_backbone(images, depth)
        camera_bev = self.camera_vtransform(self.bev_pool(probs, features))
        voxels, coords = voxelize(points, self.preset)
        lidar_bev = self.lidar_backbone(voxels, coords)
        fused = self.fuser(camera_bev, lidar_bev)
        out = self.head(fused)
        if boundaries is not None:
            boundaries.update(
                {
                    "camera.backbone": ((images, depth), (probs, features)),
                    "camera.vtransform": ((self.bev_pool(probs, features),), (camera_bev,)),
                    "lidar.backbone.xyz": ((voxels, coords), (lidar_bev,)),
                    "fuser": ((camera_bev, lidar_bev), (fused,)),
                    "head.bbox": ((fused,), out),
                }
            )
        return out


def scene_inputs(scene) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(scene.images),
        torch.from_numpy(scene.depth),
        torch.from_numpy(scene.points),
    )
