"""The `bevcc evaluate` table: parity statistics, tolerances and merging two sets' evaluations
(checked against numbers computed here by hand, independent of the accumulation)."""

import math

import numpy as np
import pytest

from bevcc.deploy.evaluation import Evaluation, FileParity, MetricRow, Parity, estimate


def test_parity_accumulates_over_batches_like_one_concatenated_batch():
    rng = np.random.default_rng(0)
    want = [rng.normal(size=7), rng.normal(size=(2, 3))]
    got = [w + rng.normal(scale=0.01, size=w.shape) for w in want]
    parity = Parity()
    for g, w in zip(got, want, strict=True):
        parity.add(g, w)
    g, w = np.concatenate([x.ravel() for x in got]), np.concatenate([x.ravel() for x in want])
    assert parity.max_abs == pytest.approx(np.abs(g - w).max())
    assert parity.sqnr_db == pytest.approx(10 * math.log10((w @ w) / ((g - w) @ (g - w))))
    assert parity.cosine == pytest.approx((g @ w) / np.linalg.norm(g) / np.linalg.norm(w))


def test_identical_outputs_have_infinite_sqnr():
    parity = Parity()
    parity.add([1.0, -2.0], [1.0, -2.0])
    assert parity.sqnr_db == math.inf and parity.max_abs == 0.0


def evaluation(set_name, sqnr, pytorch, files, label="row"):
    return Evaluation(
        "mAP",
        10,
        [MetricRow(label, pytorch, files)],
        [FileParity(set_name, "a.onnx", 0.1, 0.99, sqnr, None)],
        notes=["n"],
    )


def test_failures_name_the_file_under_tolerance_and_the_metric_row_off_by_more_than_it():
    good = evaluation("int8", 25.0, 0.5, 0.5049)
    assert good.failures() == []
    bad = evaluation("int8", 24.9, 0.5, 0.5051, label="PTQ")
    assert len(bad.failures()) == 2
    assert bad.failures()[0].startswith("int8 set: a.onnx is 24.9 dB SQNR")
    assert bad.failures()[1].startswith("PTQ: mAP of the files 0.5051 vs PyTorch 0.5000")


def test_the_metric_tolerance_is_never_finer_than_one_detection():
    few = evaluation("int8", 30.0, 0.5, 0.515)
    assert len(few.failures()) == 1  # 0.015 off, tolerance 0.005
    few.metric_step = 0.02  # e.g. 5 scenes: one flipped detection moves mAP by 0.02
    assert few.metric_tolerance == 0.02 and few.failures() == []
    few.rows[0].files = 0.521
    assert few.failures() == ["row: mAP of the files 0.5210 vs PyTorch 0.5000 (tolerance 0.02)"]
    many = evaluation("int8", 30.0, 0.5, 0.5)
    many.metric_step = 0.001  # a large evaluation: the stated tolerance holds
    assert many.metric_tolerance == 0.005
    assert many.to_json()["metric_tolerance"] == 0.005


def test_the_tolerances_are_one_plain_sentence_in_the_table():
    many = evaluation("int8", 30.0, 0.5, 0.5)
    sentence = (
        "The command fails when a file is under 25 dB SQNR against the PyTorch model it was "
        "exported from, or when the files' mAP is more than 0.005 from that model's."
    )
    assert many.tolerance() == sentence and f"\n{sentence}\n" in many.markdown()
    few = evaluation("int8", 30.0, 0.5, 0.5)
    few.metric_step = 0.02
    assert few.tolerance() == (
        "The command fails when a file is under 25 dB SQNR against the PyTorch model it was "
        "exported from, or when the files' mAP is more than 0.02 from that model's (0.005, "
        "widened to what one detection changes on 10 scenes)."
    )
    assert few.tolerance().count(". ") == 0  # one sentence


def test_each_file_is_held_against_the_float_model_and_separately_checked_for_exactness():
    """The lidar INT8 file equals its fake-quant model (inf dB): an exactness check, labelled as
    such; what INT8 costs it shows against the float model."""
    lidar = FileParity(
        "int8",
        "lidar.onnx",
        0.0,
        1.0,
        math.inf,
        math.inf,
        reference="fake-quant",
        float_max_abs=0.9,
        float_cosine=0.991,
        float_sqnr_db=18.04,
        float_chained_sqnr_db=17.96,
    )
    result = Evaluation("mAP", 10, [MetricRow("INT8 set", 0.686, 0.6857, float=0.6846)], [lidar])
    text = result.markdown()
    assert "| model | mAP: float PyTorch | mAP: its PyTorch model | mAP: deployed files |" in text
    assert "| INT8 set | 0.6846 | 0.6860 | 0.6857 | -0.0003 | +0.0011 |" in text
    float_table = text[text.index("Each file against the float PyTorch model") :]
    assert "| int8 | lidar.onnx | 18.0 | 18.0 | 0.991000 | 0.9 |" in float_table
    exact = text[text.index("Exactness check") :]
    assert "| int8 | lidar.onnx | fake-quant | inf | inf | 1.000000 | 0 |" in exact
    assert text.index("Each file against the float") < text.index("Exactness check")
    assert result.failures() == []  # inf passes; 18 dB vs float is what INT8 costs, no failure
    row = result.to_json()["parity"][0]
    assert (row["reference"], row["float_sqnr_db"]) == ("fake-quant", 18.04)


def test_a_file_compared_with_pytorch_only_prints_no_float_table():
    assert "Each file against the float" not in evaluation("int8", 30.0, 0.5, 0.5).markdown()


def test_the_estimate_line_says_how_long_in_seconds_or_minutes():
    assert estimate(200.0, 100) == "about 3.3 min for 100 scenes"
    assert estimate(50.0, 100, "scenes x 2 sets") == "about 50 s for 100 scenes x 2 sets"


def test_merged_evaluations_keep_both_sets_rows_parity_and_failures():
    merged = evaluation("int8", 30.0, 0.5, 0.5, "a").merged(
        evaluation("int8-all", 20.0, 0.4, 0.4, "b")
    )
    assert [r.label for r in merged.rows] == ["a", "b"]
    assert [p.set for p in merged.parity] == ["int8", "int8-all"]
    assert merged.notes == ["n"]
    assert len(merged.failures()) == 1 and merged.failures()[0].startswith("int8-all set")
    assert "| int8-all | a.onnx |" in merged.markdown()


def test_evaluations_of_different_metrics_or_scenes_do_not_merge():
    other = Evaluation("NDS", 10, [], [])
    expected = r"cannot merge NDS on 10 scenes \(step 0\) into mAP on 10 scenes \(step 0\)"
    with pytest.raises(ValueError, match=expected):
        evaluation("int8", 30.0, 0.5, 0.5).merged(other)
