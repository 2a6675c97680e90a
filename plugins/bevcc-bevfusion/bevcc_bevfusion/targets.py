"""Training targets and losses for the TransFusion-style head: a Gaussian class heatmap on the
fused BEV grid, and per query the nearest ground-truth object (within 1.5 cells) as its target."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from bevcc_bevfusion.head import as_dict
from bevcc_bevfusion.presets import CLASSES, Preset

SIGMA_CELLS = 0.8
MATCH_CELLS = 1.5


def to_cells(xy: np.ndarray, preset: Preset) -> np.ndarray:
    """Metres -> fused-BEV cell units (cell (i, j) spans [i, i + 1) x [j, j + 1))."""
    lo, _, cell = preset.xbound
    return (xy - lo) / (cell * 2)


def heatmap(boxes: np.ndarray, labels: np.ndarray, preset: Preset) -> torch.Tensor:
    cells = preset.bev_cells
    target = np.zeros((len(CLASSES), cells, cells), np.float32)
    grid = np.arange(cells) + 0.5
    for centre, label in zip(to_cells(boxes[:, :2], preset), labels, strict=True):
        peak = np.floor(centre).astype(int)
        if not ((peak >= 0) & (peak < cells)).all():
            continue
        gx = np.exp(-((grid - centre[0]) ** 2) / (2 * SIGMA_CELLS**2))
        gy = np.exp(-((grid - centre[1]) ** 2) / (2 * SIGMA_CELLS**2))
        target[label] = np.maximum(target[label], np.outer(gx, gy))
        target[label, peak[0], peak[1]] = 1.0
    return torch.from_numpy(target)


def gaussian_focal_loss(logits, target):
    prob = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    pos = -((1 - prob) ** 2) * prob.log() * positive
    neg = -((1 - target) ** 4) * prob**2 * (1 - prob).log() * (1 - positive)
    return (pos.sum() + neg.sum()) / positive.sum().clamp(min=1)


def head_loss(outputs, boxes: np.ndarray, labels: np.ndarray, preset: Preset) -> torch.Tensor:
    out = as_dict(outputs)
    device = out["dense_heatmap"].device  # targets are built on the CPU, used where the model ran
    target = heatmap(boxes, labels, preset).to(device)
    loss = gaussian_focal_loss(out["dense_heatmap"][0], target)
    query_pos = (
        out["query_cell"][0][:, None] // preset.bev_cells,
        out["query_cell"][0][:, None] % preset.bev_cells,
    )
    query_xy = torch.cat(query_pos, 1).float() + 0.5
    truth_xy = torch.from_numpy(to_cells(boxes[:, :2], preset)).float().to(device)
    class_target = torch.zeros_like(out["heatmap"][0])
    if len(boxes):
        distance = torch.cdist(query_xy, truth_xy)
        nearest = distance.argmin(1)
        matched = distance.min(1).values < MATCH_CELLS
        gt = torch.from_numpy(boxes).float().to(device)[nearest]
        class_target[matched, torch.from_numpy(labels).to(device)[nearest][matched]] = 1.0
        if matched.any():
            regression = {
                "center": truth_xy[nearest],
                "height": gt[:, 2:3],
                "dim": gt[:, 3:6].log(),
                "rot": torch.stack([gt[:, 6].sin(), gt[:, 6].cos()], 1),
            }
            for name, target in regression.items():
                loss = loss + 0.25 * F.l1_loss(out[name][0][matched], target[matched])
    return loss + _sigmoid_focal(out["heatmap"][0], class_target) / class_target.sum().clamp(min=1)


def _sigmoid_focal(logits, target, alpha: float = 0.25, gamma: float = 2.0):
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    weight = alpha * target + (1 - alpha) * (1 - target)
    return (weight * ce * (1 - p_t) ** gamma).sum()
