"""The task metric of a model (any callable scene -> head outputs) on a list of scenes."""

from __future__ import annotations

import torch
from bevcc_bevfusion.head import decode
from bevcc_bevfusion.metric import Detections, mean_ap
from bevcc_bevfusion.presets import CLASSES, Preset


def detections(outputs, preset: Preset) -> Detections:
    boxes = decode(outputs, preset)
    return Detections(
        boxes["xy"].detach().numpy(), boxes["label"].numpy(), boxes["score"].detach().numpy()
    )


def truth(scene) -> Detections:
    return Detections(scene.boxes[:, :2], scene.labels, scene.labels * 0.0 + 1.0)


@torch.no_grad()
def bev_map(run, scenes, preset: Preset) -> dict:
    """`run(scene)` -> head outputs; returns {'mAP', 'per_class'}."""
    predictions = [detections(run(s), preset) for s in scenes]
    return mean_ap(predictions, [truth(s) for s in scenes], CLASSES)
