"""fuser.onnx: ConvFuser (concat camera and lidar BEV, conv + BN + ReLU), then the decoder:
SECOND (two strided stages of conv + BN + ReLU) and SECONDFPN (per-stage upsampling -- a conv for
stride 1, a ConvTranspose for stride 2 -- with BN + ReLU, then concat), as BEVFusion configures them."""

from __future__ import annotations

import torch
from bevcc_bevfusion.layers import conv_bn_relu
from bevcc_bevfusion.presets import Preset
from torch import nn

SECOND_LAYERS = (5, 5)
SECOND_STRIDES = (1, 2)
BN_EPS = 1e-3  # mmdet3d's SECOND/SECONDFPN norm_cfg


class ConvFuser(nn.Module):
    def __init__(self, in_channels: tuple[int, int], out_channels: int):
        super().__init__()
        self.fuse = conv_bn_relu(sum(in_channels), out_channels, 3)

    def forward(self, camera, lidar):
        return self.fuse(torch.cat([camera, lidar], 1))


class SECOND(nn.Module):
    def __init__(self, in_channels: int, out_channels: tuple[int, int]):
        super().__init__()
        blocks, cin = [], in_channels
        for cout, layers, stride in zip(out_channels, SECOND_LAYERS, SECOND_STRIDES, strict=True):
            block = [conv_bn_relu(cin, cout, 3, stride, BN_EPS)]
            block += [conv_bn_relu(cout, cout, 3, 1, BN_EPS) for _ in range(layers)]
            blocks.append(nn.Sequential(*block))
            cin = cout
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs


class SECONDFPN(nn.Module):
    def __init__(self, in_channels: tuple[int, int], out_channels: tuple[int, int]):
        super().__init__()
        deblocks = []
        for cin, cout, stride in zip(in_channels, out_channels, SECOND_STRIDES, strict=True):
            up = (
                nn.Conv2d(cin, cout, 1, bias=False)
                if stride == 1
                else nn.ConvTranspose2d(cin, cout, stride, stride, bias=False)
            )
            deblocks.append(nn.Sequential(up, nn.BatchNorm2d(cout, eps=BN_EPS), nn.ReLU()))
        self.deblocks = nn.ModuleList(deblocks)

    def forward(self, features):
        return torch.cat(
            [deblock(x) for deblock, x in zip(self.deblocks, features, strict=True)], 1
        )


class FuserDecoder(nn.Module):
    def __init__(self, preset: Preset):
        super().__init__()
        lidar_bev = preset.lidar_out_channels * 2  # two z cells folded into channels
        self.fuser = ConvFuser((preset.camera_channels, lidar_bev), preset.fuser_channels)
        self.backbone = SECOND(preset.fuser_channels, preset.second_channels)
        self.neck = SECONDFPN(preset.second_channels, preset.fpn_out_channels)

    def forward(self, camera_bev, lidar_bev):
        return self.neck(self.backbone(self.fuser(camera_bev, lidar_bev)))
