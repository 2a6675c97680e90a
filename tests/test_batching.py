"""Calibration data of N samples fed to models with a static or a free batch (bevcc.batching)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

import bevcc
from bevcc.batching import CalibRemainderWarning, FittedBatches, fit_batches, run_in_batches
from bevcc.data import CalibData
from bevcc.errors import InputError
from tests.conftest import run_bevcc


def _samples(count: int, seed: int = 0, shape=(3, 32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def test_samples_stream_across_files_into_static_batches(tmp_path):
    data = _samples(9)
    for start in range(0, 9, 3):  # three files of 3 samples, read in name order
        np.savez(tmp_path / f"part{start}.npz", x=data[start : start + 3])
    fitted = FittedBatches(CalibData(tmp_path), {"x": (2, 3, 32, 32)})
    with pytest.warns(CalibRemainderWarning, match="last 1 sample"):
        batches = [b["x"] for b in fitted]
    assert [b.shape[0] for b in batches] == [2, 2, 2, 2]
    np.testing.assert_array_equal(np.concatenate(batches), data[:8])
    assert (fitted.dropped, fitted.used_samples) == (1, 8)


def test_exact_multiple_leaves_nothing_and_warns_nothing():
    fitted = FittedBatches(CalibData([{"x": _samples(6)}]), {"x": (3, 3, 32, 32)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [b["x"].shape[0] for b in fitted] == [3, 3]
    assert fitted.dropped == 0


def test_too_few_samples_for_one_batch_is_an_error():
    fitted = FittedBatches(CalibData([{"x": _samples(2)}], "two.npz"), {"x": (4, 3, 32, 32)})
    with pytest.raises(
        InputError,
        match=r"two.npz has 2 sample\(s\), fewer than the model's "
        r"batch of 4",
    ):
        list(fitted)


def test_wrong_resolution_names_input_expected_and_given_shape():
    fitted = FittedBatches(
        CalibData([{"x": _samples(4, shape=(3, 64, 64))}], "d.npz"), {"x": (1, 3, 32, 32)}
    )
    with pytest.raises(InputError) as info:
        list(fitted)
    message = str(info.value)
    assert "\n" not in message
    assert "input 'x' has shape (4, 3, 64, 64), the model expects (1, 3, 32, 32)" in message


def test_free_first_axis_beside_a_static_batch_is_not_split():
    """A voxel-count input next to a batched image input passes through whole."""
    voxels = np.zeros((17, 4), np.float32)
    fitted = FittedBatches(
        CalibData([{"img": _samples(2), "voxels": voxels}]),
        {"img": (1, 3, 32, 32), "voxels": (None, 4)},
    )
    batches = list(fitted)
    assert [b["img"].shape[0] for b in batches] == [1, 1]
    assert all(b["voxels"] is voxels for b in batches)


def test_dynamic_batch_is_taken_as_given_or_rechunked():
    source = CalibData([{"x": _samples(5)}])
    assert fit_batches(source, {"x": (None, 3, 32, 32)}) is source
    source.batch_size = 2
    fitted = fit_batches(source, {"x": (None, 3, 32, 32)})
    with pytest.warns(CalibRemainderWarning):
        assert [b["x"].shape[0] for b in fitted] == [2, 2]


def test_batch_size_against_a_static_batch_is_an_error():
    with pytest.raises(InputError, match="static batch of 1; drop the option"):
        FittedBatches(CalibData([]), {"x": (1, 3, 32, 32)}, batch_size=4)


def _export_batch2(model, directory):
    """`model` exported with its batch fixed at 2, as most model-zoo files fix theirs."""
    import torch

    path = directory / "batch2.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(2, 3, 32, 32),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
        )
    return path


def _scales(path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {
        t.name: onnx.numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.name.endswith("_scale")
    }


def test_static_batch_onnx_calibrates_on_an_n_sample_npz(tmp_path, tiny_onnx, registry):
    """tiny_onnx fixes its batch at 1. An 8-sample .npz gives the same scales as eight
    hand-made batches of one sample (max calibration: exact equality)."""
    data = _samples(8, seed=3)
    np.savez(tmp_path / "calib.npz", x=data)
    pipeline = "onnx(qdq_insert)"
    by_cli = tmp_path / "cli.onnx"
    result = run_bevcc(
        "compile",
        tiny_onnx,
        "--pipeline",
        pipeline,
        "--calib",
        tmp_path / "calib.npz",
        "-o",
        by_cli,
    )
    assert result.returncode == 0, result.stderr
    assert "calibrated on 8 batches" in result.stderr
    by_hand = tmp_path / "hand.onnx"
    bevcc.compile(
        tiny_onnx,
        pipeline,
        calib=[{"x": data[i : i + 1]} for i in range(8)],
        output=by_hand,
        registry=registry,
    )
    cli_scales, hand_scales = _scales(by_cli), _scales(by_hand)
    assert cli_scales.keys() == hand_scales.keys() and len(cli_scales) >= 7
    for name, value in hand_scales.items():
        np.testing.assert_array_equal(cli_scales[name], value, err_msg=name)


def test_static_batch_remainder_is_reported(tmp_path, tiny):
    """A file fixed at batch 2 and 5 samples: two batches, the fifth sample reported unused."""
    model, _ = tiny
    path = _export_batch2(model, tmp_path)
    np.savez(tmp_path / "calib.npz", x=_samples(5))
    result = run_bevcc(
        "compile",
        path,
        "--pipeline",
        "onnx(qdq_insert)",
        "--calib",
        tmp_path / "calib.npz",
        "-o",
        tmp_path / "out.onnx",
    )
    assert result.returncode == 0, result.stderr
    assert "calibrated on 2 batches" in result.stderr
    assert "1 calibration sample(s) left over after the last full batch" in result.stderr
    assert "bevcc: warning: calibration data" in result.stderr


def test_wrong_shape_on_the_cli_is_one_line_and_writes_nothing(tmp_path, tiny_onnx):
    np.savez(tmp_path / "calib.npz", x=_samples(4, shape=(4, 32, 32)))
    out = tmp_path / "out.onnx"
    result = run_bevcc(
        "compile",
        tiny_onnx,
        "--pipeline",
        "onnx(qdq_insert)",
        "--calib",
        tmp_path / "calib.npz",
        "-o",
        out,
    )
    assert result.returncode != 0
    error = [line for line in result.stderr.splitlines() if line.startswith("bevcc: error")]
    assert len(error) == 1
    assert "input 'x' has shape (4, 4, 32, 32), the model expects (1, 3, 32, 32)" in error[0]
    assert not out.exists()


def test_calib_batch_size_rechunks_the_fx_path(tmp_path, registry):
    """tiny_cnn traces with a free batch; --calib-batch-size 3 turns one 7-sample batch into
    two of 3 and reports the leftover sample."""
    with pytest.warns(CalibRemainderWarning, match="last 1 sample"):
        result = bevcc.compile(
            "tiny_cnn",
            "fx(qdq_insert)",
            calib=[{"x": _samples(7)}],
            calib_batch_size=3,
            registry=registry,
        )
    stats = result.records[-1].stats
    assert (stats["batches"], stats["unused_samples"]) == (2, 1)


def test_evaluation_runs_every_sample_through_a_static_batch(tmp_path, tiny):
    """run_in_batches (what `bevcc evaluate` runs files with): 5 samples through a batch-2 file
    give the 5 outputs of running each sample alone, the partial batch included."""
    import onnxruntime as ort
    import torch

    model, _ = tiny
    path = _export_batch2(model, tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    data = _samples(5, seed=7)
    (got,) = run_in_batches(session, {"x": data})
    with torch.no_grad():
        want = model(torch.from_numpy(data)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(
        InputError,
        match=r"input 'x' has shape \(5, 3, 16, 16\), the model "
        r"expects \(2, 3, 32, 32\)",
    ):
        run_in_batches(session, {"x": _samples(5, shape=(3, 16, 16))}, "batch2.onnx")


def test_a_batch_lacking_a_split_input_is_named(tmp_path, tiny):
    """Data keyed by the wrong name used to split into nothing (qdq_insert then died on a bare
    StopIteration); it is one error naming the missing and the present inputs."""
    fitted = FittedBatches(CalibData([{"images": _samples(4)}], "d.npz"), {"x": (2, 3, 32, 32)})
    with pytest.raises(InputError, match=r"batch 0 of d.npz lacks input.s. x; it has images"):
        list(fitted)


def test_the_public_questions_run_in_batches_asks():
    """What code that batches data its own way (run_in_batches) asks a FittedBatches: which
    inputs are split, how many samples a batch holds, whether it fits; errors name the data."""
    expected = {"img": (2, 3, 32, 32), "voxels": (None, 4)}
    fitted = FittedBatches([], expected, description="scene.npz")
    assert (fitted.batch_size, fitted.batched_inputs) == (2, ["img"])
    batch = {"img": _samples(5), "voxels": np.zeros((7, 4), np.float32)}
    fitted.check(batch)
    assert fitted.sample_count(batch) == 5
    with pytest.raises(InputError, match=r"batch 3 of scene.npz: input 'img' has shape"):
        fitted.check({"img": _samples(5, shape=(3, 16, 16))}, 3)
    with pytest.raises(InputError, match=r"batch 0 of scene.npz lacks input.s. img"):
        fitted.sample_count({"voxels": batch["voxels"]})
