"""The LSS lift-splat step between camera.backbone and camera.vtransform: every image feature,
weighted by its depth distribution, summed into the BEV cell its frustum point falls in. In the
deployment this is CUDA code (CUDA-BEVFusion's bevpool); here it is torch, and differentiable."""

from __future__ import annotations

import numpy as np
import torch
from bevcc_bevfusion.presets import Preset
from bevcc_bevfusion.rig import cameras

Z_BOUND = (-10.0, 10.0)  # one z cell, as BEVFusion's ResNet-50 config


class BEVPool(torch.nn.Module):
    def __init__(self, preset: Preset):
        super().__init__()
        cells, index, valid = _geometry(preset)
        self.cells = cells
        self.register_buffer("index", torch.from_numpy(index), persistent=False)
        self.register_buffer("valid", torch.from_numpy(valid), persistent=False)

    def forward(self, probs, features):
        """probs [N, D, h, w], features [N, h, w, C] -> BEV [1, C, X, Y]."""
        channels = features.shape[-1]
        bev = features.new_zeros(self.cells * self.cells, channels)
        for cam in range(probs.shape[0]):  # one camera at a time bounds the frustum tensor
            lifted = probs[cam, :, :, :, None] * features[cam, None]  # [D, h, w, C]
            valid = self.valid[cam]
            bev = bev.index_add(0, self.index[cam][valid], lifted.reshape(-1, channels)[valid])
        return bev.t().reshape(1, channels, self.cells, self.cells)


def _geometry(preset: Preset):
    """BEV cell of every frustum point (camera, depth bin, feature row, feature column)."""
    height, width = preset.image_size
    fh, fw = preset.feature_size
    start, stop, step = preset.dbound
    depths = np.arange(start, stop, step)[: preset.depth_bins]
    us = np.linspace(0, width - 1, fw)
    vs = np.linspace(0, height - 1, fh)
    d, v, u = np.meshgrid(depths, vs, us, indexing="ij")
    lo, hi, cell = preset.xbound
    cells = round((hi - lo) / cell)
    indices, valids = [], []
    for camera in cameras(preset.image_size):
        pixels = np.stack([u * d, v * d, d], -1).reshape(-1, 3)
        points = (pixels @ np.linalg.inv(camera.intrinsics).T) @ camera.rotation.T + camera.position
        ij = np.floor((points[:, :2] - lo) / cell).astype(np.int64)
        valid = (
            ((ij >= 0) & (ij < cells)).all(1)
            & (points[:, 2] >= Z_BOUND[0])
            & (points[:, 2] < Z_BOUND[1])
        )
        indices.append(np.where(valid, ij[:, 0] * cells + ij[:, 1], 0))
        valids.append(valid)
    return cells, np.stack(indices), np.stack(valids)
