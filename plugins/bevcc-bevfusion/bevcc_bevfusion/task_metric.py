"""`bevfusion_map`, the task metric sensitivity_disable can rank by (metric=bevfusion_map).

It scores the fuser or the head of the small reference while bevcc analyses it: evaluation batch i
is calibration scene i (the order `deploy.small.*_calib` yields them), so its ground truth is
known. Fuser outputs go through the float head first; head outputs are scored directly.
"""

from __future__ import annotations

import torch
from bevcc_bevfusion.dataset import load_scene
from bevcc_bevfusion.evaluate import detections, truth
from bevcc_bevfusion.metric import mean_ap
from bevcc_bevfusion.presets import CLASSES, SMALL


def bevfusion_map(outputs, reference, batches) -> float:
    from bevcc_bevfusion.deploy import small

    head = small.model.head
    predictions = []
    with torch.no_grad():
        for output in outputs:
            values = list(output) if isinstance(output, (tuple, list)) else [output]
            values = [torch.as_tensor(v) for v in values]
            head_outputs = values if len(values) > 1 else head(values[0])
            predictions.append(detections(head_outputs, SMALL))
    truths = [truth(load_scene("calib", i, SMALL)) for i in range(len(outputs))]
    return mean_ap(predictions, truths, CLASSES)["mAP"]
