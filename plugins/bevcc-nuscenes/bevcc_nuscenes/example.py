"""A tiny detector for the tiny dataroot, and its decoder: the nuScenes metrics end to end.

The "detector" maps each sample's object centres (relative to the ego vehicle, the input) to the
same centres (the output) through two Linear layers. `fc1` also writes one constant feature of
400 that `fc2` ignores (zero weights), so `fc2`'s INT8 input scale is set by that feature and
the centres round to multiples of about 3 m: INT8 on `fc2` costs mAP, INT8 on `fc1` (input range
~25 m, steps of 0.2 m, inside the 0.5 m match threshold) costs none. Sizes, headings, velocities,
classes and attributes ride along in the batch, as labels would.

CLI use: BEVCC_NUSCENES_DATAROOT=DIR (from `python -m bevcc_nuscenes.tiny_dataroot DIR`),
BEVCC_NUSCENES_VERSION=v1.0-mini, BEVCC_NUSCENES_EVAL_SET=mini_val,
BEVCC_NUSCENES_DECODER=bevcc_nuscenes.example:decode, then
`bevcc sensitivity bevcc_nuscenes.example:tiny_detector --calib
bevcc_nuscenes.example:calibration_batches --metric nuscenes_map --max-drop 0.01 -o OUT`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bevcc_nuscenes.boxes import ATTRIBUTE_NAMES, DETECTION_NAMES
from bevcc_nuscenes.tiny_dataroot import tiny_tables

OBJECTS = 20  # kept ground truth per tiny sample: two of each class
PLANTED = 400.0


class TinyDetector(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2 * OBJECTS, 2 * OBJECTS + 1)
        self.fc2 = nn.Linear(2 * OBJECTS + 1, 2 * OBJECTS)
        with torch.no_grad():
            self.fc1.weight.zero_()
            self.fc1.weight[: 2 * OBJECTS].copy_(torch.eye(2 * OBJECTS))
            self.fc1.bias.zero_()
            self.fc1.bias[-1] = PLANTED
            self.fc2.weight.zero_()
            self.fc2.weight[:, : 2 * OBJECTS].copy_(torch.eye(2 * OBJECTS))
            self.fc2.bias.zero_()

    def forward(self, x):
        return self.fc2(self.fc1(x))


def tiny_detector():
    return TinyDetector().eval(), (torch.zeros(1, 2 * OBJECTS),)


def calibration_batches(split: str = "mini_val") -> list[dict]:
    """One batch per sample of the tiny dataroot's `split`: the input and the box labels."""
    _, truth = tiny_tables()
    batches = []
    for token in truth.splits[split]:
        boxes, ego = truth.kept[token], np.array(truth.ego[token])
        assert len(boxes) == OBJECTS
        centres = np.array([b["translation"] for b in boxes])
        batches.append(
            {
                "x": (centres[:, :2] - ego[:2]).reshape(1, -1).astype(np.float32),
                "sample_token": np.array([token]),
                "ego": ego[None],
                "z": centres[None, :, 2],
                "size": np.array([[b["size"] for b in boxes]]),
                "rotation": np.array([[b["rotation"] for b in boxes]]),
                "velocity": np.array([[b["velocity"] for b in boxes]]),
                "label": np.array([[DETECTION_NAMES.index(b["detection_name"]) for b in boxes]]),
                "attribute": np.array(
                    [[(("", *ATTRIBUTE_NAMES)).index(b["attribute_name"]) for b in boxes]]
                ),
            }
        )
    return batches


def decode(output, batch) -> dict[str, list[dict]]:
    """The decoder the metrics call: (output tuple, batch) -> {sample_token: [box, ...]}."""
    centres = output[0].detach().double().numpy().reshape(len(batch["sample_token"]), OBJECTS, 2)
    decoded = {}
    for i, token in enumerate(batch["sample_token"]):
        xy = centres[i] + batch["ego"][i][:2]
        decoded[str(token)] = [
            {
                "translation": [xy[j, 0], xy[j, 1], batch["z"][i][j]],
                "size": batch["size"][i][j],
                "rotation": batch["rotation"][i][j],
                "velocity": batch["velocity"][i][j],
                "detection_name": DETECTION_NAMES[batch["label"][i][j]],
                "detection_score": 1.0,
                "attribute_name": ("", *ATTRIBUTE_NAMES)[batch["attribute"][i][j]],
            }
            for j in range(OBJECTS)
        ]
    return decoded
