"""bevcc-nuscenes: nuScenes detection mAP / NDS (nuscenes-devkit's DetectionEval) as metrics."""

from bevcc_nuscenes.metric import evaluate_results, nuscenes_metric

__all__ = ["evaluate_results", "nuscenes_metric"]
