"""The camera subnets as CUDA-BEVFusion splits them.

`CameraBackbone` (camera.backbone.onnx): ResNet-50 -> GeneralizedLSSFPN -> DepthLSSTransform's
depth-image encoder and depth net; outputs the per-pixel depth distribution and the image features.
`CameraVTransform` (camera.vtransform.onnx): the BEV downsample after the BEV pool. The BEV pool
itself is runtime code (CUDA in the deployment, `bevpool.py` here), not a network file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from bevcc_bevfusion.layers import conv_bn_relu
from bevcc_bevfusion.presets import Preset
from bevcc_bevfusion.resnet import ResNet50
from torch import nn


class GeneralizedLSSFPN(nn.Module):
    """BEVFusion's FPN: each level concatenates the upsampled level above with its own lateral,
    then a 1x1 and a 3x3 ConvModule; the top level enters the concat raw."""

    def __init__(self, in_channels: tuple[int, ...], out_channels: int):
        super().__init__()
        levels = len(in_channels) - 1
        self.lateral_convs = nn.ModuleList(
            conv_bn_relu(
                in_channels[i] + (in_channels[i + 1] if i == levels - 1 else out_channels),
                out_channels,
                1,
            )
            for i in range(levels)
        )
        self.fpn_convs = nn.ModuleList(
            conv_bn_relu(out_channels, out_channels, 3) for _ in range(levels)
        )

    def forward(self, c3, c4, c5):
        laterals = [c3, c4, c5]
        for i in range(len(laterals) - 2, -1, -1):
            up = F.interpolate(
                laterals[i + 1], size=laterals[i].shape[2:], mode="bilinear", align_corners=False
            )
            laterals[i] = self.fpn_convs[i](self.lateral_convs[i](torch.cat([laterals[i], up], 1)))
        return laterals[0]


class CameraBackbone(nn.Module):
    def __init__(self, preset: Preset):
        super().__init__()
        width, fpn = preset.resnet_width, preset.fpn_channels
        self.depth_bins, self.channels = preset.depth_bins, preset.camera_channels
        self.backbone = ResNet50(width)
        stage = width * 4  # bottleneck expansion
        self.neck = GeneralizedLSSFPN((stage * 2, stage * 4, stage * 8), fpn)
        # the sparse lidar depth image, encoded down to the feature stride (8)
        self.dtransform = nn.Sequential(
            conv_bn_relu(1, 8, 1), conv_bn_relu(8, 32, 5, 4), conv_bn_relu(32, 64, 5, 2)
        )
        self.depthnet = nn.Sequential(
            conv_bn_relu(fpn + 64, fpn, 3),
            conv_bn_relu(fpn, fpn, 3),
            nn.Conv2d(fpn, self.depth_bins + self.channels, 1),
        )

    def forward(self, img, depth):
        """img [N, 3, H, W], depth [N, 1, H, W] -> (depth probabilities [N, D, h, w],
        features [N, h, w, C])."""
        feat = self.neck(*self.backbone(img))
        x = self.depthnet(torch.cat([self.dtransform(depth), feat], 1))
        probs = x[:, : self.depth_bins].softmax(dim=1)
        features = x[:, self.depth_bins : self.depth_bins + self.channels]
        return probs, features.permute(0, 2, 3, 1)


class CameraVTransform(nn.Module):
    def __init__(self, preset: Preset):
        super().__init__()
        c = preset.camera_channels
        self.downsample = nn.Sequential(
            conv_bn_relu(c, c, 3), conv_bn_relu(c, c, 3, 2), conv_bn_relu(c, c, 3)
        )

    def forward(self, bev):
        return self.downsample(bev)
