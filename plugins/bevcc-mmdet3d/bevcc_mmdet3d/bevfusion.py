"""mmdet3d's own BEVFusion detector, cut into the five files CUDA-BEVFusion deploys.

The detector is built from the checkout's lidar-camera config by mmdet3d's registry (the user's
classes, not copies), with a checkpoint's weights (BEVCC_MMDET3D_CHECKPOINT) or seeded ones, and
cut where TensorRT's part ends (bev_pool and voxelization are CUDA kernels outside the files):

- camera.backbone: SwinTransformer + GeneralizedLSSFPN, images [N, 3, H, W] -> [N, 256, H/8, W/8]
- camera.vtransform: DepthLSSTransform.get_cam_feats (lidar depth net, depth softmax, outer
  product), features [1, N, 256, H/8, W/8] and depth [1, N, 1, H, W] -> frustum features
- lidar.backbone.xyz: BEVFusionSparseEncoder, voxels [V, 5] and coordinates (batch, x, y, z)
- fuser: the view transform's BEV downsample, ConvFuser, SECOND, SECONDFPN
- head.bbox: TransFusionHead's forward (heatmap, proposals, transformer decoder, predictions)

Sizes: BEVCC_MMDET3D_SIZE=full is the config's (6 cameras 256x704, grid 1440x1440x41, BEV 180);
the default, small, keeps every width and shrinks the inputs (1 camera 128x352, grid 128x128x41,
BEV 16) so a CPU compiles the set in minutes.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from bevcc.errors import InputError
from bevcc.reference import random_voxels, seeded
from bevcc_mmdet3d import bevfusion_project, mm

CHECKPOINT_ENV = "BEVCC_MMDET3D_CHECKPOINT"
SIZE_ENV = "BEVCC_MMDET3D_SIZE"
CALIB_BATCHES = 4


@dataclass(frozen=True)
class Size:
    cameras: int
    image: tuple[int, int]  # H, W
    grid: tuple[int, int, int]  # x, y, z voxels (the config's sparse_shape order)
    voxels: int

    @property
    def feature(self) -> tuple[int, int]:
        return self.image[0] // 8, self.image[1] // 8

    @property
    def bev(self) -> int:  # the lidar BEV side: the sparse encoder strides x and y by 8
        return self.grid[0] // 8


SIZES = {
    "small": Size(cameras=1, image=(128, 352), grid=(128, 128, 41), voxels=2000),
    "full": Size(cameras=6, image=(256, 704), grid=(1440, 1440, 41), voxels=60000),
}


def size() -> Size:
    name = os.environ.get(SIZE_ENV, "small").strip() or "small"
    if name not in SIZES:
        raise InputError(f"{SIZE_ENV}={name} is not a size; use {' or '.join(SIZES)}")
    return SIZES[name]


@cache
def detector(checkout, checkpoint: str, size_: Size) -> nn.Module:
    """The BEVFusion detector in eval mode, built once per checkout, checkpoint and size."""
    config = bevfusion_project.detector_config(checkout).model.copy()
    config = copy.deepcopy(config)
    config.pts_middle_encoder.sparse_shape = list(size_.grid)
    config.view_transform.image_size = list(size_.image)
    config.view_transform.feature_size = list(size_.feature)
    for key in ("train_cfg", "test_cfg"):
        config.bbox_head[key].grid_size = list(size_.grid)
    config.img_backbone.pop("init_cfg", None)  # no download of ImageNet weights
    if checkpoint:
        model = mm.load_checkpoint(mm.build(config, "BEVFusion"), checkpoint)
    else:
        model, _ = seeded(lambda: mm.build(config, "BEVFusion"), 0)
    model.eval()  # its return value is not the model: mmdet's SwinTransformer.train returns None
    return model


def _detector() -> nn.Module:
    return detector(
        bevfusion_project.checkout(), os.environ.get(CHECKPOINT_ENV, "").strip(), size()
    )


class CameraBackbone(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.img_backbone, self.img_neck = model.img_backbone, model.img_neck

    def forward(self, images):
        features = self.img_neck(self.img_backbone(images))
        return features[0] if isinstance(features, (list, tuple)) else features


class CameraDepth(nn.Module):
    """get_cam_feats, the view transform's network part (bev_pool, a CUDA kernel, follows)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.view_transform = model.view_transform

    def forward(self, features, depth):
        return self.view_transform.get_cam_feats(features, depth)


class Fuser(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.downsample = model.view_transform.downsample
        self.fusion_layer, self.pts_backbone, self.pts_neck = (
            model.fusion_layer,
            model.pts_backbone,
            model.pts_neck,
        )

    def forward(self, camera_bev, lidar_bev):
        x = self.fusion_layer([self.downsample(camera_bev), lidar_bev])
        return self.pts_neck(self.pts_backbone(x))[0]


class Head(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.bbox_head = model.bbox_head

    def forward(self, bev):
        return self.bbox_head.forward_single(bev, None)[0]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(s: Size, seed: int) -> torch.Tensor:
    return torch.randn(s.cameras, 3, *s.image, generator=_generator(seed))


def _camera_features(s: Size, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(seed)
    features = torch.randn(1, s.cameras, 256, *s.feature, generator=g)
    # lidar depth projected into the images: a few percent of the pixels hold a depth
    depth = torch.rand(1, s.cameras, 1, *s.image, generator=g) * 60
    depth = depth * (torch.rand(depth.shape, generator=g) < 0.05)
    return features, depth


def _voxels(s: Size, seed: int):
    return random_voxels(seed, s.voxels, s.grid, channels=5)


def _bev(s: Size, seed: int):
    g = _generator(seed)
    camera = torch.randn(1, 80, 2 * s.bev, 2 * s.bev, generator=g)
    return camera, torch.randn(1, 256, s.bev, s.bev, generator=g)


def camera_backbone():
    return CameraBackbone(_detector()), (_images(size(), 0),)


def camera_backbone_calib():
    return [{"images": _images(size(), 100 + i).numpy()} for i in range(CALIB_BATCHES)]


def camera_vtransform():
    return CameraDepth(_detector()), _camera_features(size(), 0)


def camera_vtransform_calib():
    batches = [_camera_features(size(), 100 + i) for i in range(CALIB_BATCHES)]
    return [{"features": f.numpy(), "depth": d.numpy()} for f, d in batches]


def lidar_backbone():
    features, coors = _voxels(size(), 0)
    return _detector().pts_middle_encoder, (features, coors, 1)


def lidar_backbone_calib():
    batches = [_voxels(size(), 100 + i) for i in range(CALIB_BATCHES)]
    return [{"voxel_features": f.numpy(), "coors": c.numpy()} for f, c in batches]


def fuser():
    return Fuser(_detector()), _bev(size(), 0)


def fuser_calib():
    batches = [_bev(size(), 100 + i) for i in range(CALIB_BATCHES)]
    return [{"camera_bev": c.numpy(), "lidar_bev": lidar.numpy()} for c, lidar in batches]


def head():
    g = _generator(0)
    return Head(_detector()), (torch.randn(1, 512, size().bev, size().bev, generator=g),)


def head_calib():
    s = size()
    return [
        {"bev": torch.randn(1, 512, s.bev, s.bev, generator=_generator(100 + i)).numpy()}
        for i in range(CALIB_BATCHES)
    ]
