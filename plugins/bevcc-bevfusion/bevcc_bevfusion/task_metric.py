"""`bevfusion_map`, the task metric sensitivity_disable can rank by (metric=bevfusion_map).

It scores any one subnet of the small reference while bevcc analyses it: the subnet's outputs go
through the rest of the float model to detections, with the other branch's float tensors, and
are scored against the ground truth. Evaluation batch i is calibration scene i (the order
`deploy.small.*_calib` yields them), so scene, ground truth and the other branch are known.
"""

from __future__ import annotations

import torch
from bevcc_bevfusion.dataset import load_scene
from bevcc_bevfusion.evaluate import detections, truth
from bevcc_bevfusion.metric import mean_ap
from bevcc_bevfusion.presets import CLASSES, SMALL


def bevfusion_map(outputs, reference, batches) -> float:
    from bevcc_bevfusion.deploy import small

    predictions = []
    with torch.no_grad():
        for i, output in enumerate(outputs):
            values = tuple(torch.as_tensor(v) for v in output)
            predictions.append(detections(finish(small, i, values), SMALL))
    truths = [truth(load_scene("calib", i, SMALL)) for i in range(len(outputs))]
    return mean_ap(predictions, truths, CLASSES)["mAP"]


def finish(deployment, scene: int, values: tuple):
    """Run the float model from the boundary whose outputs look like `values` to the head."""
    model, record = deployment.model, deployment.boundaries[scene]
    shapes = tuple(v.shape for v in values)
    file = next(
        (f for f, (_, outs) in record.items() if tuple(o.shape for o in outs) == shapes), None
    )
    if file is None:
        raise ValueError(
            f"bevfusion_map: outputs of shapes {shapes} are no boundary of the "
            "BEVFusion reference; rank this model by sqnr or cosine"
        )
    if file == "head.bbox":
        return values
    if file == "fuser":
        return model.head(values[0])
    camera_bev, lidar_bev = record["fuser"][0]
    if file == "lidar.backbone.xyz":
        lidar_bev = values[0]
    elif file == "camera.vtransform":
        camera_bev = values[0]
    elif file == "camera.backbone":
        camera_bev = model.camera_vtransform(model.bev_pool(*values))
    return model.head(model.fuser(camera_bev, lidar_bev))
