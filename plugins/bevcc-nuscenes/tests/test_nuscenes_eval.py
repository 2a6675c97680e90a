"""nuscenes-devkit's DetectionEval on the tiny dataroot: perfect, shifted, thinned and filtered
predictions give the mAP and NDS worked out by hand from the nuScenes definitions."""

import copy
import math

import numpy as np
import pytest
from bevcc_nuscenes import evaluate_results

CLASSES = 10
# TP errors the devkit leaves out (NaN): cone attribute/velocity/orientation, barrier
# attribute/velocity
NAN_TP = {"traffic_cone": {"attr_err", "vel_err", "orient_err"}, "barrier": {"attr_err", "vel_err"}}


def evaluate(tiny, results, **kw):
    return evaluate_results(results, tiny.root, version="v1.0-mini", eval_set="mini_val", **kw)


def perfect(tiny, samples=None):
    return {t: copy.deepcopy(tiny.kept[t]) for t in samples or tiny.splits["mini_val"]}


def nds(mean_ap, tp_errors):
    """NDS = (5 mAP + sum over the 5 TP errors of (1 - min(1, error))) / 10."""
    return (5 * mean_ap + sum(1 - min(1.0, e) for e in tp_errors)) / 10


def test_perfect_predictions_score_one(tiny):
    metrics = evaluate(tiny, perfect(tiny))
    assert metrics["mean_ap"] == pytest.approx(1.0, abs=1e-12)
    for name, errors in metrics["label_tp_errors"].items():
        for metric, value in errors.items():
            if metric in NAN_TP.get(name, ()):
                assert math.isnan(value), (name, metric)
            else:  # velocities differ from the devkit's estimate by float rounding only
                assert value == pytest.approx(0.0, abs=1e-9), (name, metric)
    assert metrics["nd_score"] == pytest.approx(nds(1.0, [0.0] * 5), abs=1e-9)
    assert metrics["cfg"]["class_range"]["car"] == 50  # detection_cvpr_2019 by default


def test_centres_shifted_past_two_of_four_thresholds_halve_the_car_ap(tiny):
    results = perfect(tiny)
    for boxes in results.values():
        for box in boxes:
            if box["detection_name"] == "car":
                box["translation"][0] += 1.5  # matched at 2 m and 4 m, not at 0.5 m and 1 m
    metrics = evaluate(tiny, results)
    assert metrics["mean_dist_aps"]["car"] == pytest.approx(0.5, abs=1e-12)
    assert metrics["mean_ap"] == pytest.approx(0.95, abs=1e-12)
    # car translation error 1.5 m averaged over the 10 classes; the rest stays 0
    assert metrics["tp_errors"]["trans_err"] == pytest.approx(0.15, abs=1e-12)
    assert metrics["nd_score"] == pytest.approx(nds(0.95, [0.15, 0, 0, 0, 0]), abs=1e-9)


def test_centres_shifted_beyond_four_metres_lose_the_class(tiny):
    results = perfect(tiny)
    for boxes in results.values():
        for box in boxes:
            if box["detection_name"] == "car":
                box["translation"][1] += 5.0
    metrics = evaluate(tiny, results)
    assert metrics["mean_dist_aps"]["car"] == 0.0
    assert metrics["mean_ap"] == pytest.approx(0.9, abs=1e-12)
    # an unmatched class has TP errors of 1; means run over the classes that are not NaN
    expected = [1 / 10, 1 / 10, 1 / 9, 1 / 8, 1 / 8]
    assert list(metrics["tp_errors"].values()) == pytest.approx(expected, abs=1e-9)
    assert metrics["nd_score"] == pytest.approx(nds(0.9, expected), abs=1e-9)


def test_half_of_the_cars_missing(tiny):
    results = perfect(tiny)
    for token in tiny.splits["mini_val"][:3]:  # 2 cars per sample: 6 of 12 remain
        results[token] = [b for b in results[token] if b["detection_name"] != "car"]
    metrics = evaluate(tiny, results)
    # precision 1 up to recall 0.5, then 0; AP keeps recall > 0.1 (bins 11..100) and precision
    # above 0.1, rescaled: (40 bins * 0.9 / 90) / 0.9 = 4/9
    assert metrics["mean_dist_aps"]["car"] == pytest.approx(4 / 9, abs=1e-12)
    assert metrics["mean_ap"] == pytest.approx((9 + 4 / 9) / 10, abs=1e-12)
    assert metrics["nd_score"] == pytest.approx(nds((9 + 4 / 9) / 10, [0.0] * 5), abs=1e-9)


def test_boxes_outside_the_class_range_are_filtered(tiny):
    results = perfect(tiny)
    token = tiny.splits["mini_val"][0]
    ego = np.array(tiny.ego[token])
    cone = copy.deepcopy(next(b for b in results[token] if b["detection_name"] == "traffic_cone"))
    far = {**cone, "translation": [ego[0], ego[1] - 35.0, 0.5], "detection_score": 2.0}
    # the ground truth beyond range (a car 60 m away) and without points is dropped too: the
    # perfect predictions above leave it out, and predicting the far car changes nothing
    assert any(b["detection_name"] == "car" for b in tiny.dropped[token])
    results[token] += [far, *[b for b in tiny.dropped[token] if b["detection_name"] == "car"]]
    assert evaluate(tiny, results)["mean_ap"] == pytest.approx(1.0, abs=1e-12)
    # the same false cone 25 m away counts: it comes first (score 2) among 13 cones for 12 truths
    results[token][-2] = {**far, "translation": [ego[0], ego[1] - 25.0, 0.5]}
    cone_ap = evaluate(tiny, results)["mean_dist_aps"]["traffic_cone"]
    assert cone_ap == pytest.approx(interpolated_ap(hits=[0] + [1] * 12, positives=12), abs=1e-12)
    assert cone_ap < 0.95


def interpolated_ap(hits, positives, min_recall=0.1, min_precision=0.1):
    """nuScenes AP from ranked hit flags: precision at 101 recall points, clipped and rescaled."""
    tp = np.cumsum(hits)
    precision, recall = tp / np.arange(1, len(hits) + 1), tp / positives
    points = np.interp(np.linspace(0, 1, 101), recall, precision, right=0)
    kept = points[round(100 * min_recall) + 1 :] - min_precision
    return float(np.clip(kept, 0, None).mean()) / (1 - min_precision)


def test_only_the_named_samples_are_scored(tiny):
    first_scene = tiny.scenes["scene-0103"]
    assert evaluate(tiny, perfect(tiny, first_scene))["mean_ap"] == pytest.approx(1.0, abs=1e-12)
    # scoring the whole split with detections for half of it: every class at recall 0.5
    metrics = evaluate(tiny, perfect(tiny, first_scene), sample_tokens=tiny.splits["mini_val"])
    assert metrics["mean_ap"] == pytest.approx(4 / 9, abs=1e-12)


def test_a_custom_config_is_the_one_used(tiny):
    from bevcc_nuscenes.tiny_dataroot import CLASS_RANGE

    config = {
        "class_range": {**CLASS_RANGE, "car": 1},
        "dist_fcn": "center_distance",
        "dist_ths": [0.5, 1.0, 2.0, 4.0],
        "dist_th_tp": 2.0,
        "min_recall": 0.1,
        "min_precision": 0.1,
        "max_boxes_per_sample": 500,
        "mean_ap_weight": 5,
    }
    # no car within 1 m of the ego vehicle: the class has no ground truth and scores 0
    metrics = evaluate(tiny, perfect(tiny), config=config)
    assert metrics["cfg"]["class_range"]["car"] == 1
    assert metrics["mean_ap"] == pytest.approx(0.9, abs=1e-12)
