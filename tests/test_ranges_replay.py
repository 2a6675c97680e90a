"""Calibrated ranges as a recorded decision (bevcc/quant/ranges.py): a set compile records the
amax each calibrating fx step set, and rebuilding a file's PyTorch model (`bevcc evaluate`)
sets them from the record instead of calibrating again."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

import bevcc
from bevcc.config import CompileConfig, FileSpec
from bevcc.deploy.evaluation import reference_modules
from bevcc.errors import BevccError
from bevcc.quant.quantizer import TensorQuantizer

CNN = (
    "fx(bn_fold,qdq_insert{calibrator=histogram:percentile},quantizer_unify),export,"
    "onnx(strong_typing)"
)
SPARSE = "fx(bn_fold,sparse_conv_quant{calibrator=histogram:percentile}),export_libspconv"
CALIB_CNN = "bevcc.reference.tiny_cnn:calibration_batches"


def _config(tmp_path) -> CompileConfig:
    calib = tmp_path / "sparse_calib.py"
    calib.write_text(
        "from bevcc.reference.tiny_sparse import random_voxels\n\n\n"
        "def batches():\n"
        "    return [dict(zip(['voxel_features', 'coors'], [t.numpy() for t in "
        "random_voxels(seed)])) for seed in range(1, 4)]\n"
    )
    return CompileConfig(
        files=[
            FileSpec("camera", "tiny_cnn", CNN, "int8", calib=CALIB_CNN),
            FileSpec("lidar", "tiny_sparse", SPARSE, "libspconv", calib=f"{calib}:batches"),
        ]
    )


def _amax(module) -> dict[str, torch.Tensor]:
    return {
        name: q.amax.clone()
        for name, q in module.named_modules()
        if isinstance(q, TensorQuantizer) and q.amax is not None
    }


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(config, set directory, {file: the fx module each file was exported from})."""
    home = tmp_path_factory.mktemp("ranges")
    config = _config(home)
    kept = {}

    class KeepFx(bevcc.Instrumentation):
        """A copy of the fx module as the last fx step leaves it (export reads it)."""

        def __init__(self, name):
            self.name = name

        def after_pass(self, step, ir, result):
            if step.label.startswith("fx("):
                kept[self.name] = copy.deepcopy(ir.module)

    for spec in config.files:  # the same compile the set runs, keeping each fx module
        bevcc.compile(
            spec.input, pipeline=spec.pipeline, calib=spec.calib,
            instrumentations=[KeepFx(spec.name)],
        )  # fmt: skip
    out = home / "set"
    bevcc.compile_set(config, output=out)
    return config, out, kept


def test_a_set_records_each_calibrating_steps_ranges(compiled):
    _, out, kept = compiled
    assert sorted(p.name for p in (out / "reports" / "camera").iterdir()) == [
        "qdq_insert.ranges.json",
        "quantizer_unify.ranges.json",
    ]
    assert sorted(p.name for p in (out / "reports" / "lidar").iterdir()) == [
        "sparse_conv_quant.ranges.json"
    ]
    recorded = json.loads((out / "reports" / "lidar" / "sparse_conv_quant.ranges.json").read_text())
    assert recorded["format"] == "bevcc-ranges/1"
    want = _amax(kept["lidar"])
    activations = {k: v for k, v in want.items() if "weight" not in k}
    assert set(recorded["ranges"]) == set(activations)
    for name, entry in recorded["ranges"].items():
        assert torch.equal(torch.tensor(entry["amax"]).reshape(entry["shape"]), want[name])


def test_the_rebuilt_models_have_the_compiles_ranges_bit_for_bit(compiled):
    config, out, kept = compiled
    rebuilt = reference_modules(config, out, quantized=True)
    for name in ("camera", "lidar"):
        got, want = _amax(rebuilt[name]), _amax(kept[name])
        assert got.keys() == want.keys() and len(got) > 4, name
        for key in want:
            assert torch.equal(got[key], want[key]), (name, key)


def test_the_ranges_come_from_the_record_not_from_calibrating_again(compiled, tmp_path):
    config, out, _ = compiled
    edited = tmp_path / "set"
    shutil.copytree(out, edited)
    path = edited / "reports" / "lidar" / "sparse_conv_quant.ranges.json"
    data = json.loads(path.read_text())
    name = min(data["ranges"])
    data["ranges"][name]["amax"] = [7.25]
    path.write_text(json.dumps(data))
    rebuilt = reference_modules(config, edited, quantized=True)
    assert _amax(rebuilt["lidar"])[name].item() == 7.25
    del data["ranges"][name]
    path.write_text(json.dumps(data))
    with pytest.raises(BevccError) as caught:  # the pass's failure, naming the step
        reference_modules(config, edited, quantized=True)
    message = str(caught.value)
    assert message.startswith("pass 'sparse_conv_quant' failed after [bn_fold]: ")
    assert f"{path}: no recorded range for 1 quantizer(s) ({name}): " in message
    assert "\n" not in message and message.endswith("compile the set again")


def test_a_set_without_records_calibrates_as_before(compiled, tmp_path):
    config, out, kept = compiled
    edited = tmp_path / "set"
    shutil.copytree(out, edited)
    shutil.rmtree(edited / "reports")  # a set compiled before ranges were recorded
    rebuilt = reference_modules(config, edited, quantized=True)
    for key, value in _amax(kept["camera"]).items():
        assert torch.equal(_amax(rebuilt["camera"])[key], value), key


def test_a_plain_output_gets_no_records_beside_it(tmp_path):
    bevcc.compile("tiny_cnn", pipeline=CNN, calib=CALIB_CNN, output=tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
