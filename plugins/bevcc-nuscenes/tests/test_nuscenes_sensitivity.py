"""The metric in a real sensitivity run: INT8 on the tiny detector's fc2 costs mAP, on fc1
nothing, so sensitivity_disable{metric=nuscenes_map,max_drop=0.01} keeps exactly fc2 float."""

import json

import pytest
from bevcc_nuscenes import example

import bevcc
from bevcc.testing import plugin_registry


@pytest.fixture
def settings(tiny, monkeypatch):
    for key, value in {
        "DATAROOT": str(tiny.root),
        "VERSION": "v1.0-mini",
        "EVAL_SET": "mini_val",
        "DECODER": "bevcc_nuscenes.example:decode",
    }.items():
        monkeypatch.setenv(f"BEVCC_NUSCENES_{key}", value)


def test_sensitivity_keeps_the_layer_whose_int8_costs_map_float(settings, tmp_path):
    registry = plugin_registry("nuscenes")  # the installed plugin's entry point
    assert registry.metrics["nuscenes_map"].plugin == "nuscenes"
    result = bevcc.compile(
        example.tiny_detector(),
        calib=example.calibration_batches(),
        registry=registry,
        artifacts_dir=tmp_path,
        pipeline=("fx(qdq_insert,sensitivity_disable{metric=nuscenes_map,max_drop=0.01})"),
    )
    stats = result.records[-1].stats
    assert stats["metric"] == "nuscenes_map"
    assert stats["disabled"] == ["fc2"]
    table = stats["table"]
    # float mAP is 1; fc1's 0.2 m INT8 steps stay inside the 0.5 m threshold, fc2's ~3 m do not
    assert table["fc1"]["alone_quantized"] == pytest.approx(1.0, abs=1e-12)
    assert table["fc2"]["alone_quantized"] < 0.9
    assert stats["all_int8"] == pytest.approx(table["fc2"]["alone_quantized"], abs=1e-12)
    assert stats["final"] == pytest.approx(1.0, abs=1e-12)
    recorded = json.loads((tmp_path / "disable_list.json").read_text())
    assert recorded["disable"] == ["fc2"]
    assert not result.ir.module.get_submodule("fc2").weight_quantizer.enabled
    assert result.ir.module.get_submodule("fc1").weight_quantizer.enabled
