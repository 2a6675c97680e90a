import math

import numpy as np
import pytest
from bevcc_bevfusion.metric import Detections, average_precision, mean_ap


def dets(xy, label, score=None):
    xy = np.array(xy, float).reshape(-1, 2)
    score = np.ones(len(xy)) if score is None else np.array(score, float)
    return Detections(xy, np.array(label), score)


def test_perfect_predictions_score_one():
    truth = [dets([[0, 0], [10, 0]], [0, 0])]
    assert average_precision(truth, truth, 0, 0.5) == pytest.approx(1.0)


def test_predictions_beyond_the_threshold_score_zero():
    truth = [dets([[0, 0]], [0])]
    assert average_precision([dets([[0.6, 0]], [0])], truth, 0, 0.5) == 0.0
    assert average_precision([dets([[0.6, 0]], [0])], truth, 0, 1.0) == pytest.approx(1.0)


def test_wrong_class_never_matches():
    truth = [dets([[0, 0]], [1])]
    assert average_precision([dets([[0, 0]], [0])], truth, 1, 4.0) == 0.0


def test_half_recall_by_hand():
    # two objects, one found with precision 1: recall 0.5 -> precision 1 up to recall 0.5 and 0
    # after; nuScenes samples recall 0.11..1.00 (90 points), 40 of them <= 0.5
    truth = [dets([[0, 0], [20, 0]], [0, 0])]
    ap = average_precision([dets([[0, 0]], [0])], truth, 0, 1.0)
    assert ap == pytest.approx(40 * 0.9 / 90 / 0.9)


def test_a_false_positive_ranked_first_costs_precision():
    truth = [dets([[0, 0]], [0])]
    pred = [dets([[9, 9], [0, 0]], [0, 0], [0.9, 0.8])]
    # the curve goes (recall 0, precision 0) -> (1, 1/2); nuScenes interpolates linearly between
    # the points and keeps precision above 0.1 at recall 0.11 .. 1.00
    expected = sum(max(0.5 * r / 100 - 0.1, 0) for r in range(11, 101)) / 90 / 0.9
    assert average_precision(pred, truth, 0, 1.0) == pytest.approx(expected)


def test_one_truth_matches_one_prediction():
    truth = [dets([[0, 0]], [0])]
    pred = [dets([[0, 0], [0.1, 0]], [0, 0], [0.9, 0.8])]
    # the duplicate is a false positive after full recall: only the last sample (recall 1.00)
    # sees its precision 1/2
    assert average_precision(pred, truth, 0, 1.0) == pytest.approx((89 * 0.9 + 0.4) / 90 / 0.9)


def test_mean_ap_skips_absent_classes():
    truth = [dets([[0, 0]], [0])]
    result = mean_ap(truth, truth, ("car", "truck"))
    assert result["mAP"] == pytest.approx(1.0) and math.isnan(result["per_class"]["truck"])
