"""Bad settings and inputs are one clear line: no devkit interpreter, a wrong dataroot, a sample
outside the split, a malformed box, a missing setting."""

import sys

import pytest
from bevcc_nuscenes import evaluate_results
from bevcc_nuscenes.devkit import PYTHON_ENV

from bevcc.errors import BevccError


def evaluate(tiny, results, **kw):
    return evaluate_results(results, tiny.root, version="v1.0-mini", eval_set="mini_val", **kw)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_a_missing_interpreter_names_the_setting_and_the_setup_script(tiny, monkeypatch):
    monkeypatch.setenv(PYTHON_ENV, "/nonexistent/python")
    with pytest.raises(BevccError) as excinfo:
        evaluate(tiny, {})
    assert one_line(excinfo) == (
        "bevcc-nuscenes: devkit interpreter /nonexistent/python does "
        "not exist; run plugins/bevcc-nuscenes/setup-devkit-env or fix "
        "BEVCC_NUSCENES_PYTHON"
    )


def test_an_interpreter_without_the_devkit_says_so(tiny):
    # bevcc's own interpreter cannot import nuscenes (numpy 2)
    with pytest.raises(BevccError) as excinfo:
        evaluate(tiny, {}, python=sys.executable)
    message = one_line(excinfo)
    assert "No module named 'nuscenes'" in message
    assert message.endswith("; run plugins/bevcc-nuscenes/setup-devkit-env")


def test_a_wrong_dataroot(tmp_path):
    with pytest.raises(BevccError) as excinfo:
        evaluate_results({}, tmp_path, version="v1.0-mini", eval_set="mini_val")
    assert one_line(excinfo) == (
        f"nuScenes dataroot {tmp_path}: no v1.0-mini/sample.json; point "
        "it at the folder holding v1.0-mini/ (or set the version)"
    )


def test_a_sample_outside_the_split(tiny):
    train = tiny.splits["mini_train"][0]
    with pytest.raises(BevccError) as excinfo:
        evaluate(tiny, {train: []})
    assert one_line(excinfo) == (
        f"nuScenes evaluation failed: ValueError: sample {train} is not "
        f"in split 'mini_val' of v1.0-mini at {tiny.root.resolve()}; "
        "score samples of that split, or set the split"
    )


def test_a_malformed_box(tiny):
    token = tiny.splits["mini_val"][0]
    box = {**tiny.kept[token][0], "detection_name": "tram"}
    with pytest.raises(
        BevccError, match=f"sample {token}, box 0: detection_name 'tram' is none of car, truck"
    ):
        evaluate(tiny, {token: [box]})


def test_the_registered_metric_without_settings(monkeypatch):
    from bevcc_nuscenes.settings import nuscenes_map

    monkeypatch.delenv("BEVCC_NUSCENES_DATAROOT", raising=False)
    with pytest.raises(BevccError) as excinfo:
        nuscenes_map([], [], [])
    assert one_line(excinfo).startswith(
        "nuscenes_map needs BEVCC_NUSCENES_DATAROOT: set it to the nuScenes dataroot"
    )
