import math

import numpy as np
import pytest
from bevcc_bevfusion.metric import Detections, average_precision, mean_ap, one_detection_step


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


def test_one_detection_step_is_what_losing_one_match_of_the_rarest_class_costs():
    # 2 cars, 4 trucks, no pedestrian: mAP averages 2 classes, and a lost car is the largest step
    truth = [
        dets([[0, 0], [20, 0], [0, 20], [20, 20]], [0, 1, 1, 1]),
        dets([[0, 0], [20, 0]], [0, 1]),
    ]
    classes = ("car", "truck", "pedestrian")
    step = one_detection_step(truth, classes)
    assert step == pytest.approx(1 / (0.9 * 2 * 2))
    one_car_lost = [truth[0], dets([[20, 0]], [1])]
    drop = mean_ap(truth, truth, classes)["mAP"] - mean_ap(one_car_lost, truth, classes)["mAP"]
    # car AP at every threshold falls from 1 to 40/90 (precision 1 up to recall 0.5): a step of
    # 50/90 = 1/(0.9 * 2) on one class of two
    assert drop == pytest.approx(step)
    assert one_detection_step([dets([], [])], classes) == 0.0
