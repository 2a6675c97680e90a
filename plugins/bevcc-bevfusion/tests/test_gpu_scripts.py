"""The GPU-facing scripts on the CPU (same behaviour as before, the flags, their errors) and on
CUDA (`-m gpu`, skipped without it): training (the lidar trains only on CUDA), the accuracy
script's QAT step, parallel scene generation, the full-size benchmark's quick mode."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bevcc_bevfusion import accuracy, dataset, train
from bevcc_bevfusion.lidar import voxelize
from bevcc_bevfusion.model import BEVFusion, scene_inputs
from bevcc_bevfusion.presets import SMALL
from bevcc_bevfusion.scenes import scene
from bevcc_bevfusion.targets import head_loss

CUDA = torch.cuda.is_available()
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA (torch.cuda.is_available())")
no_cuda = pytest.mark.skipif(CUDA, reason="checks the answer of a machine without CUDA")
BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "bevfusion_full_gpu.py"


def seeded_lidar() -> dict:
    """The lidar backbone's parameters as train.py initialises them (seed 0), in half
    precision as the weights file stores them."""
    torch.manual_seed(0)
    model = BEVFusion(SMALL)
    return {k: v.half() for k, v in model.state_dict().items() if k.startswith("lidar_backbone.")}


def lidar_weights(state: dict) -> dict:
    return {
        k: v
        for k, v in state.items()
        if k.startswith("lidar_backbone.") and k.endswith(".weight") and v.dim() > 1
    }


def run_train(tmp_path, device: str) -> tuple[dict, str]:
    out = tmp_path / "w" / "bevfusion_small.pt"
    assert (
        train.main(
            ["--scenes", "2", "--epochs", "1", "--out", str(out), "--device", device, "--jobs", "1"]
        )
        == 0
    )
    return torch.load(out, weights_only=True), (out.parent / "train.log").read_text()


def test_train_on_cpu_writes_half_weights_and_a_log_and_keeps_the_lidar_at_its_seed(tmp_path):
    state, log = run_train(tmp_path, "cpu")
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    BEVFusion(SMALL).load_state_dict({k: v.float() for k, v in state.items()})  # complete
    seeded = seeded_lidar()
    for name, weight in lidar_weights(state).items():
        assert torch.equal(weight, seeded[name]), name  # no backward through CPU spconv
    changed = [k for k, v in state.items() if k.startswith("head.") and v.is_floating_point()]
    torch.manual_seed(0)
    initial = BEVFusion(SMALL).state_dict()
    assert any(not torch.equal(state[k], initial[k].half()) for k in changed)  # the rest trains
    lines = log.splitlines()
    assert lines[0].startswith("device cpu, 2 scenes x 1 epochs, seed 0, lidar frozen at its seed")
    assert any(line.startswith("epoch 1/1: loss ") for line in lines)
    assert lines[-1].startswith(f"wrote {tmp_path / 'w' / 'bevfusion_small.pt'}; total ")


@no_cuda
@pytest.mark.parametrize("script", [train, accuracy])
def test_a_cuda_request_without_cuda_is_one_line_exit_2_and_writes_nothing(
    script, tmp_path, capsys
):
    argv = ["--device", "cuda"]
    argv += (
        ["--out", str(tmp_path / "w.pt")]
        if script is train
        else ["--json", str(tmp_path / "a.json")]
    )
    with pytest.raises(SystemExit) as caught:
        script.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device 'cuda': CUDA is not available here" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_parallel_generation_writes_the_same_scenes(tmp_path, monkeypatch):
    monkeypatch.setenv("BEVCC_CACHE", str(tmp_path))
    got = dataset.load_split("val", 3, SMALL, jobs=2)
    assert sorted(p.name for p in dataset.cache_dir(SMALL).iterdir()) == [
        "val-00000.npz",
        "val-00001.npz",
        "val-00002.npz",
    ]
    for i, s in enumerate(got):
        want = scene("val", i, SMALL)  # generated here, in this process
        for key, value in vars(want).items():
            np.testing.assert_array_equal(getattr(s, key), value, err_msg=f"scene {i} {key}")


def test_qat_on_cpu_keeps_the_lidar_frozen_and_returns_a_cpu_model():
    torch.manual_seed(1)
    model = BEVFusion(SMALL).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = accuracy.fine_tune(model, [scene("train", 0, SMALL)], device="cpu")
    after = tuned.state_dict()
    for name in lidar_weights(before):
        assert torch.equal(after[name], before[name]), name
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("fuser."))
    assert all(v.device.type == "cpu" for v in after.values())


def load_benchmark():
    spec = importlib.util.spec_from_file_location("bevfusion_full_gpu", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_benchmark(tmp_path, device: str, *extra: str) -> tuple[dict, str]:
    bench = load_benchmark()
    out_json, out_md = tmp_path / "b.json", tmp_path / "b.md"
    argv = ["--quick", "--device", device, "--json", str(out_json), "--md", str(out_md), *extra]
    assert bench.main(argv) == 0
    return json.loads(out_json.read_text()), out_md.read_text()


def check_benchmark_run(run: dict, md: str, device: str) -> None:
    stages = [row["stage"] for row in run["stages"]]
    assert stages == [
        "generate scenes",
        "build model",
        "float pass",
        "compile camera.backbone",
        "compile camera.vtransform",
        "compile lidar.backbone.xyz",
        "compile fuser",
        "compile head.bbox",
    ]
    assert run["scenes"] == 2 and run["preset"] == "small" and run["device"] == device
    # every compile's passes are timed, sensitivity_disable included where the INT8 files run it
    passes = {
        row["stage"]: [p["name"] for p in row["passes"]] for row in run["stages"] if "passes" in row
    }
    for file in ("camera.backbone", "lidar.backbone.xyz", "fuser"):
        assert any(name.startswith("fx(sensitivity_disable{") for name in passes[f"compile {file}"])
    assert passes["compile head.bbox"] == [
        "fx(dce)",
        "export",
        "onnx(strong_typing)",
        "onnx(check)",
    ]
    assert "| compile head.bbox | " in md and "dce " in md
    check_ratios(run)
    assert f"python benchmarks/bevfusion_full_gpu.py --quick --device {device}`" in md


def check_ratios(run: dict) -> None:
    assert [r["file"] for r in run["forward_ratios"]] == [
        "camera.backbone",
        "lidar.backbone.xyz",
        "fuser",
    ]
    for r in run["forward_ratios"]:
        assert r["fake_quant_s"] > 0 and r["float_s"] > 0
        assert r["calibration_s"] > 0 and r["fed_float_s"] > 0
        # seconds keep six decimals: a GPU forward of the small preset takes about a millisecond
        assert r["ratio"] == pytest.approx(r["fake_quant_s"] / r["float_s"], rel=0.01)
        assert r["calibration_ratio"] == pytest.approx(
            r["calibration_s"] / r["fed_float_s"], rel=0.01
        )


def test_benchmark_quick_mode_on_cpu_in_two_calls_merges_them(tmp_path):
    # as on a machine whose commands are limited in time: two calls, --files splitting the set
    first, _ = run_benchmark(tmp_path, "cpu", "--files", "camera.backbone,camera.vtransform")
    assert first["runs"]["quick cpu"]["files"] == ["camera.backbone", "camera.vtransform"]
    assert first["runs"]["quick cpu"]["complete"] is True  # every file it was asked for
    stored, md = run_benchmark(tmp_path, "cpu", "--files", "lidar.backbone.xyz,fuser,head.bbox")
    assert list(stored["runs"]) == ["quick cpu"]
    run = stored["runs"]["quick cpu"]
    # each call's shared stages kept (each call paid them), compiles in the set's order
    shared = ["generate scenes", "build model", "float pass"]
    call_1 = shared + ["compile camera.backbone", "compile camera.vtransform"]
    call_2 = shared + ["compile lidar.backbone.xyz", "compile fuser", "compile head.bbox"]
    assert [(row["call"], row["stage"]) for row in run["stages"]] == [
        *((1, name) for name in call_1),
        *((2, name) for name in call_2),
    ]
    assert run["complete"] is True and run["files"] == list(load_benchmark().pipelines(2))
    assert run["seconds"] > first["runs"]["quick cpu"]["seconds"] + run["stages"][-3]["seconds"]
    # the second call read the scenes the first generated
    assert "0 generated by" in run["stages"][5]["detail"]
    command = "python benchmarks/bevfusion_full_gpu.py --quick --device cpu --files "
    assert stored["commands"]["quick cpu"] == [
        command + "camera.backbone,camera.vtransform",
        command + "lidar.backbone.xyz,fuser,head.bbox",
    ]
    assert "call 2: compile head.bbox" in md and "Partial" not in md
    check_ratios(run)
    assert all(row["peak_gpu_mb"] is None for row in run["stages"])


def test_benchmark_names_an_unknown_file_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        load_benchmark().main(
            ["--quick", "--device", "cpu", "--files", "lidar", "--json", str(tmp_path / "b.json")]
        )
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown lidar" in err and "lidar.backbone.xyz" in err
    assert not (tmp_path / "b.json").exists()


# ---- on CUDA --------------------------------------------------------------------------------
@gpu
@needs_cuda
def test_gpu_voxelize_and_loss_match_the_cpu(monkeypatch):
    # full float32 on the GPU too (TF32 convolutions would move the loss by ~1e-3)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    s = scene("train", 0, SMALL)
    points = torch.from_numpy(s.points)
    for cpu, cuda in zip(voxelize(points, SMALL), voxelize(points.cuda(), SMALL), strict=True):
        assert cuda.device.type == "cuda"
        torch.testing.assert_close(cuda.cpu(), cpu)
    torch.manual_seed(0)
    model = BEVFusion(SMALL).eval()
    with torch.no_grad():
        want = head_loss(model(*scene_inputs(s)), s.boxes, s.labels, SMALL)
        model.cuda()
        got = head_loss(model(*(t.cuda() for t in scene_inputs(s))), s.boxes, s.labels, SMALL)
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), want, rtol=1e-3, atol=1e-3)


@gpu
@needs_cuda
def test_gpu_train_trains_the_lidar(tmp_path):
    state, log = run_train(tmp_path, "cuda")
    assert log.splitlines()[0].startswith("device cuda, 2 scenes x 1 epochs, seed 0, lidar trained")
    seeded = seeded_lidar()
    moved = [name for name, w in lidar_weights(state).items() if not torch.equal(w, seeded[name])]
    assert moved == list(lidar_weights(state))  # every sparse conv's weights were updated
    assert all(torch.isfinite(v.float()).all() for v in state.values() if v.is_floating_point())


@gpu
@needs_cuda
def test_gpu_qat_fine_tunes_the_lidar_too():
    torch.manual_seed(1)
    model = BEVFusion(SMALL).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = accuracy.fine_tune(model, [scene("train", 0, SMALL)], device="cuda")
    after = tuned.state_dict()
    assert all(v.device.type == "cpu" for v in after.values())
    assert any(not torch.equal(after[k], before[k]) for k in lidar_weights(before))


@gpu
@needs_cuda
def test_gpu_benchmark_quick_mode(tmp_path):
    stored, md = run_benchmark(tmp_path, "cuda")
    run = stored["runs"]["quick gpu"]
    check_benchmark_run(run, md, "cuda")
    float_pass = next(row for row in run["stages"] if row["stage"] == "float pass")
    assert float_pass["peak_gpu_mb"] > 0
