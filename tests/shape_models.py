"""Models whose forward does shape arithmetic, written the way public perception code bases do.

Our own code with the structure of (not copied from):
- mmdetection3d's `BEVFusionSparseEncoder` (projects/BEVFusion/bevfusion/sparse_encoder.py, a
  `SparseEncoder` subclass): forward(voxel_features, coors, batch_size), `coors.int()`, stages of
  conv-BN-ReLU sparse conv modules, then `N, C, H, W, D = x.shape`, a permute and
  `view(N, C * D, H, W)`;
- OpenPCDet's `VoxelBackBone8x` (pcdet/models/backbones_3d/spconv_backbone.py) and
  `HeightCompression` (pcdet/models/backbones_2d/map_to_bev/height_compression.py): modules that
  read and update a `batch_dict`, `SparseConvTensor(features=..., indices=coords.int(), ...)` with
  a numpy `sparse_shape`, and `N, C, D, H, W = x.shape; view(N, C * D, H, W)`;
- an mmdet-FPN-like camera neck taking a tuple of feature maps, with `x.shape[2:]` / `x.shape[-2:]`
  as F.interpolate sizes.
Widths and grids are small so the tests run in seconds on a CPU.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import spconv.pytorch as spconv
import torch
import torch.nn.functional as F
from torch import nn

from bevcc.reference.seeding import randomize_batchnorm, seeded

NORM = partial(nn.BatchNorm1d, eps=1e-3, momentum=0.01)  # both code bases' sparse BatchNorm


def conv_module(
    in_channels, out_channels, kernel_size, indice_key, conv_type="subm", stride=1, padding=0
):
    """conv (no bias: BatchNorm follows), BatchNorm1d on the features, ReLU."""
    if conv_type == "subm":
        conv = spconv.SubMConv3d(
            in_channels,
            out_channels,
            kernel_size,
            padding=padding,
            bias=False,
            indice_key=indice_key,
        )
    else:
        conv = spconv.SparseConv3d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            bias=False,
            indice_key=indice_key,
        )
    return spconv.SparseSequential(conv, NORM(out_channels), nn.ReLU())


class MmdetStyleSparseEncoder(nn.Module):
    """BEVFusion's sparse encoder shape: xyz grid, the last conv strides z, z folded into C."""

    def __init__(
        self,
        in_channels=5,
        sparse_shape=(32, 32, 21),
        base_channels=8,
        output_channels=32,
        encoder_channels=((8,), (16, 16), (32, 32)),
        encoder_paddings=((1,), (1, 1), ((1, 1, 0), 1)),
    ):
        super().__init__()
        self.sparse_shape = list(sparse_shape)
        self.conv_input = conv_module(in_channels, base_channels, 3, "subm1", padding=1)
        self.encoder_layers = spconv.SparseSequential()
        channels = base_channels
        for i, stage in enumerate(encoder_channels):
            blocks = []
            for j, out_channels in enumerate(stage):
                padding = encoder_paddings[i][j]
                if i != 0 and j == 0:  # every stage but the first starts by striding
                    blocks.append(
                        conv_module(
                            channels,
                            out_channels,
                            3,
                            f"spconv{i + 1}",
                            "spconv",
                            stride=2,
                            padding=padding,
                        )
                    )
                else:
                    blocks.append(
                        conv_module(channels, out_channels, 3, f"subm{i + 1}", padding=padding)
                    )
                channels = out_channels
            self.encoder_layers.add_module(
                f"encoder_layer{i + 1}", spconv.SparseSequential(*blocks)
            )
        self.conv_out = conv_module(
            channels, output_channels, (1, 1, 3), "spconv_down2", "spconv", stride=(1, 1, 2)
        )

    def forward(self, voxel_features, coors, batch_size):
        coors = coors.int()
        x = spconv.SparseConvTensor(voxel_features, coors, self.sparse_shape, batch_size)
        x = self.conv_input(x)
        features = []
        for layer in self.encoder_layers:
            x = layer(x)
            features.append(x)
        dense = self.conv_out(features[-1]).dense()
        N, C, H, W, D = dense.shape
        dense = dense.permute(0, 1, 4, 2, 3).contiguous()
        return dense.view(N, C * D, H, W)


class PcdetStyleBackbone(nn.Module):
    """VoxelBackBone8x's shape: zyx grid (grid_size[::-1] + [1, 0, 0]), 8x down, batch_dict I/O."""

    def __init__(
        self, input_channels=4, grid_size=(32, 32, 40), widths=(8, 16, 16, 16), out_channels=32
    ):
        super().__init__()
        grid_size = np.array(grid_size)  # x, y, z, as OpenPCDet's point-cloud config gives it
        self.sparse_shape = grid_size[::-1] + [1, 0, 0]
        w1, w2, w3, w4 = widths
        self.conv_input = conv_module(input_channels, w1, 3, "subm1", padding=1)
        self.conv1 = spconv.SparseSequential(conv_module(w1, w1, 3, "subm1", padding=1))
        self.conv2 = spconv.SparseSequential(
            conv_module(w1, w2, 3, "spconv2", "spconv", stride=2, padding=1),
            conv_module(w2, w2, 3, "subm2", padding=1),
        )
        self.conv3 = spconv.SparseSequential(
            conv_module(w2, w3, 3, "spconv3", "spconv", stride=2, padding=1),
            conv_module(w3, w3, 3, "subm3", padding=1),
        )
        self.conv4 = spconv.SparseSequential(
            conv_module(w3, w4, 3, "spconv4", "spconv", stride=2, padding=(0, 1, 1)),
            conv_module(w4, w4, 3, "subm4", padding=1),
        )
        self.conv_out = conv_module(
            w4, out_channels, (3, 1, 1), "spconv_down2", "spconv", stride=(2, 1, 1)
        )

    def forward(self, batch_dict):
        x = spconv.SparseConvTensor(
            features=batch_dict["voxel_features"],
            indices=batch_dict["voxel_coords"].int(),
            spatial_shape=self.sparse_shape,
            batch_size=batch_dict["batch_size"],
        )
        x = self.conv_input(x)
        x_conv4 = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        batch_dict.update(
            {"encoded_spconv_tensor": self.conv_out(x_conv4), "encoded_spconv_tensor_stride": 8}
        )
        return batch_dict


class HeightCompressionStyle(nn.Module):
    def forward(self, batch_dict):
        dense = batch_dict["encoded_spconv_tensor"].dense()
        N, C, D, H, W = dense.shape
        batch_dict["spatial_features"] = dense.view(N, C * D, H, W)
        batch_dict["spatial_features_stride"] = batch_dict["encoded_spconv_tensor_stride"]
        return batch_dict


class PcdetStyleDetector(nn.Module):
    """The modules run in turn on one batch_dict, as OpenPCDet's detectors run their module_list;
    the deployed part ends at the BEV map."""

    def __init__(self):
        super().__init__()
        self.module_list = nn.ModuleList([PcdetStyleBackbone(), HeightCompressionStyle()])

    def forward(self, batch_dict):
        for module in self.module_list:
            batch_dict = module(batch_dict)
        return batch_dict["spatial_features"]


class CameraNeck(nn.Module):
    """Laterals, nearest top-down upsampling to the finer map's size, 3x3 outputs, and a
    bilinear-upsampled concat of all levels (a BEVFusion-style fused map)."""

    def __init__(self, in_channels=(16, 32, 64), out_channels=16):
        super().__init__()
        self.in_channels = in_channels

        def conv(cin, k):
            return nn.Sequential(
                nn.Conv2d(cin, out_channels, k, padding=k // 2, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
            )

        self.lateral_convs = nn.ModuleList(conv(c, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(conv(out_channels, 3) for _ in in_channels)
        self.fuse = conv(out_channels * len(in_channels), 3)

    def forward(self, inputs):
        assert len(inputs) == len(self.in_channels)
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            size = laterals[i - 1].shape[2:]
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=size, mode="nearest"
            )
        outs = [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals, strict=True)]
        size = outs[0].shape[-2:]
        fused = torch.cat(
            [outs[0]]
            + [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs[1:]],
            1,
        )
        return outs[0], self.fuse(fused)


def seeded_eval(factory, seed=0):
    """Seeded weights and non-trivial BatchNorm statistics (so bn_fold has work), eval mode."""
    model, generator = seeded(factory, seed)
    randomize_batchnorm(model, generator)
    return model.eval()


def voxels(seed, count, grid, channels, order="xyz"):
    """Unique int32 voxel coordinates (batch 0, then the grid axes in `order`) and features."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.unique((torch.rand(count, 3, generator=g) * torch.tensor(grid)).long(), dim=0)
    coors = torch.cat([torch.zeros(len(cells), 1, dtype=torch.long), cells], 1).int()
    coors = coors[torch.randperm(len(coors), generator=g)]  # voxelizers emit no sorted order
    return torch.randn(len(coors), channels, generator=g), coors


def camera_features(seed, batch=2, size=(24, 40), channels=(16, 32, 64)):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    return tuple(
        torch.randn(batch, c, h // 2**i, w // 2**i, generator=g) for i, c in enumerate(channels)
    )


def mmdet_style(seed=0, count=400):
    model = seeded_eval(MmdetStyleSparseEncoder, seed)
    features, coors = voxels(seed, count, model.sparse_shape, 5)
    return model, (features, coors, 1)


def pcdet_style(seed=0, count=400):
    model = seeded_eval(PcdetStyleDetector, seed)
    grid = model.module_list[0].sparse_shape.tolist()
    features, coors = voxels(seed, count, grid, 4)
    return model, ({"voxel_features": features, "voxel_coords": coors, "batch_size": 1},)
