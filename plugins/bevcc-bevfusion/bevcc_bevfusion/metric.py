"""BEV centre-point AP, nuScenes' detection AP without the box-quality terms: per class and per
centre-distance threshold, greedy matching by score, precision sampled at 101 recall points,
recall and precision below 0.1 ignored; mAP is the mean over classes and thresholds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLDS_M = (0.5, 1.0, 2.0, 4.0)
MIN_RECALL = MIN_PRECISION = 0.1


@dataclass
class Detections:
    xy: np.ndarray  # [K, 2] metres
    label: np.ndarray  # [K]
    score: np.ndarray  # [K]


def average_precision(
    predictions: list[Detections], truths: list[Detections], label: int, threshold: float
) -> float:
    """nuScenes' AP for one class at one centre-distance threshold over a list of scenes."""
    count = sum(int((t.label == label).sum()) for t in truths)
    if count == 0:
        return float("nan")
    candidates = [
        (score, scene, i)
        for scene, p in enumerate(predictions)
        for i, score in enumerate(p.score)
        if p.label[i] == label
    ]
    candidates.sort(key=lambda c: -c[0])
    taken = [np.zeros(len(t.label), bool) for t in truths]
    hits = np.zeros(len(candidates))
    for n, (_, scene, i) in enumerate(candidates):
        truth = truths[scene]
        distance = np.linalg.norm(truth.xy - predictions[scene].xy[i], axis=1)
        distance[(truth.label != label) | taken[scene]] = np.inf
        if len(distance) and distance.min() < threshold:
            taken[scene][distance.argmin()] = True
            hits[n] = 1
    if not len(hits):
        return 0.0
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / count
    sampled = np.interp(np.linspace(0, 1, 101), recall, precision, right=0)
    sampled = sampled[round(100 * MIN_RECALL) + 1 :] - MIN_PRECISION
    return float(np.clip(sampled, 0, None).mean() / (1 - MIN_PRECISION))


def mean_ap(predictions: list[Detections], truths: list[Detections], classes) -> dict:
    """{'mAP': ..., 'per_class': {name: AP averaged over thresholds}}."""
    per_class = {}
    for label, name in enumerate(classes):
        aps = [average_precision(predictions, truths, label, t) for t in THRESHOLDS_M]
        per_class[name] = float(np.mean(aps))
    present = [v for v in per_class.values() if not np.isnan(v)]
    return {"mAP": float(np.mean(present)) if present else float("nan"), "per_class": per_class}


def one_detection_step(truths: list[Detections], classes) -> float:
    """About the most one detection can move mAP on these truths: a match gained or lost shifts
    its class's recall by 1/n (n boxes of that class), which moves AP by up to 1/n of the
    sampled recall range (above MIN_RECALL) at each threshold, and mAP by that over the number
    of classes averaged."""
    counts = [sum(int((t.label == label).sum()) for t in truths) for label in range(len(classes))]
    present = [n for n in counts if n]
    if not present:
        return 0.0
    return 1.0 / ((1 - MIN_RECALL) * len(present) * min(present))
