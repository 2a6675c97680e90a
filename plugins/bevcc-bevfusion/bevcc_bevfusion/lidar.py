"""The lidar side: voxelization (runtime code in the deployment) and the SparseEncoder that
becomes lidar.backbone.xyz.onnx."""

from __future__ import annotations

import torch
from bevcc_bevfusion.presets import Preset
from bevcc_bevfusion.sparse_encoder import SparseEncoder


def lidar_backbone(preset: Preset) -> SparseEncoder:
    return SparseEncoder(
        in_channels=5,
        sparse_shape=preset.sparse_shape,
        output_channels=preset.lidar_out_channels,
        base_channels=preset.lidar_base_channels,
    )


def voxelize(points: torch.Tensor, preset: Preset) -> tuple[torch.Tensor, torch.Tensor]:
    """Points [P, 5] -> (mean features per voxel [V, 5], int32 coordinates [V, 4] as
    (batch, x, y, z)): BEVFusion's `voxelize_reduce`, xyz order."""
    device = points.device  # CPU in the deployment's glue; CUDA while training on a GPU
    lo = torch.tensor(preset.point_range[:3], device=device)
    hi = torch.tensor(preset.point_range[3:], device=device)
    size = torch.tensor(preset.voxel_size, device=device)
    inside = ((points[:, :3] >= lo) & (points[:, :3] < hi)).all(1)
    points = points[inside]
    cells = ((points[:, :3] - lo) / size).floor().long()
    shape = torch.tensor(preset.sparse_shape, device=device)
    cells = torch.minimum(cells, shape - 1)
    key = (cells[:, 0] * shape[1] + cells[:, 1]) * shape[2] + cells[:, 2]
    unique, inverse = torch.unique(key, return_inverse=True)
    counts = torch.zeros(len(unique), device=device).index_add_(
        0, inverse, torch.ones(len(key), device=device)
    )
    features = torch.zeros(len(unique), points.shape[1], device=device)
    features = features.index_add_(0, inverse, points)
    features /= counts[:, None]
    xyz = torch.stack(
        [unique // (shape[1] * shape[2]), unique // shape[2] % shape[1], unique % shape[2]], 1
    )
    batch = torch.zeros(len(unique), 1, dtype=torch.long, device=device)
    coords = torch.cat([batch, xyz], 1).int()
    return features, coords
