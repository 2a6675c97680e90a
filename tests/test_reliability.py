"""Reliability, tried and counted: every bad input is one error line, a non-zero exit, no
traceback and no output file; inputs are never modified; writes are atomic even when the disk
fails half-way; Ctrl-C leaves nothing behind; compiling twice gives the same bytes."""

import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from bevcc.testing import scaled_timeout
from tests.conftest import run_bevcc

INT8 = "fx(bn_fold,qdq_insert,quantizer_unify),export,onnx(check)"
CALIB = "bevcc.reference.tiny_cnn:calibration_batches"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_file(tmp: Path, body: str) -> str:
    path = tmp / "model.py"
    path.write_text("import torch\nfrom torch import nn\n" + body)
    return f"{path}:build"


def tiny_onnx_file(tmp: Path, opset: int = 17) -> Path:
    from bevcc.reference.tiny_cnn import tiny_cnn

    model, inputs = tiny_cnn()
    path = tmp / f"tiny{opset}.onnx"
    torch.onnx.export(
        model,
        inputs,
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=["x"],
        output_names=["y"],
    )
    return path


def _garbage(tmp):
    (tmp / "in.onnx").write_bytes(os.urandom(4096))
    return [str(tmp / "in.onnx")], "is not a readable ONNX file"


def _truncated(tmp):
    data = tiny_onnx_file(tmp).read_bytes()
    (tmp / "in.onnx").write_bytes(data[: len(data) // 2])
    return [str(tmp / "in.onnx")], "ONNX"


def _external_data_missing(tmp):
    from bevcc.reference.tiny_cnn import tiny_cnn

    model, inputs = tiny_cnn()
    path = tmp / "in.onnx"
    torch.onnx.export(
        model,
        inputs,
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
    )
    proto = onnx.load(path)
    onnx.save(
        proto,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    (tmp / "weights.bin").unlink()
    return [str(path)], "weights.bin"


def _quantizer_on_an_unsupported_op(tmp):
    config = tmp / "q.toml"
    config.write_text('[[overrides]]\nmatch = "block.relu"\ncalibrator = "max"\n')
    return [
        "tiny_cnn",
        "--calib",
        CALIB,
        "--pipeline",
        f"fx(qdq_insert{{config={config}}}),export",
    ], "'block.relu' is a ReLU, which has no quantizer"


def _untraceable(tmp):
    ref = model_file(
        tmp,
        "class M(nn.Module):\n    def forward(self, x):\n"
        "        return x if x.sum() > 0 else -x\n"
        "def build():\n    return M(), (torch.ones(1, 3),)\n",
    )
    return [ref, "--pipeline", "fx(dce),export"], "cannot trace M"


def _unknown_pass(tmp):
    return ["tiny_cnn", "--pipeline", "fx(bn_flod)"], "unknown fx pass 'bn_flod': did you mean"


def _bad_option(tmp):
    return [
        "tiny_cnn",
        "--calib",
        CALIB,
        "--pipeline",
        "fx(qdq_insert{per_channel=maybe})",
    ], "per_channel"


def _wrong_ir(tmp):
    return [str(tiny_onnx_file(tmp)), "--pipeline", "onnx(dce)"], "runs on fx, not onnx"


def _nan_calibration(tmp):
    data = np.zeros((2, 3, 32, 32), np.float32)
    data[1, 0, 0, 0] = np.nan
    np.savez(tmp / "calib.npz", x=data)
    return [
        "tiny_cnn",
        "--calib",
        str(tmp / "calib.npz"),
        "--pipeline",
        INT8,
    ], "calibration batch 0 input 'x'"


def _wrong_shape_calibration(tmp):
    np.savez(tmp / "calib.npz", x=np.zeros((2, 4, 32, 32), np.float32))
    return [
        "tiny_cnn",
        "--calib",
        str(tmp / "calib.npz"),
        "--pipeline",
        INT8,
    ], "has shape (2, 4, 32, 32), the model takes ('N', 3, 32, 32)"


def _no_batches(tmp):
    (tmp / "empty").mkdir()
    return ["tiny_cnn", "--calib", str(tmp / "empty"), "--pipeline", INT8], "has no batches"


def _state_dict(tmp):
    ref = model_file(tmp, "def build():\n    return nn.Conv2d(3, 4, 1).state_dict()\n")
    return [ref], "got a state_dict"


def _unwritable_output(tmp):
    (tmp / "a_file").write_text("x")
    return [
        "tiny_cnn",
        "--calib",
        CALIB,
        "--pipeline",
        INT8,
        "-o",
        str(tmp / "a_file" / "out.onnx"),
    ], "cannot write"


def _uncalibrated_export(tmp):
    ref = model_file(
        tmp,
        "from bevcc.quant.quantizer import TensorQuantizer\n"
        "class M(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.q = TensorQuantizer()\n"
        "        self.conv = nn.Conv2d(3, 4, 1)\n"
        "    def forward(self, x):\n        return self.conv(self.q(x))\n"
        "def build():\n    return M(), (torch.ones(1, 3, 4, 4),)\n",
    )
    return [ref, "--pipeline", "fx(dce),export"], "node q (q): is enabled but has no amax"


MATRIX = {
    "garbage onnx": _garbage,
    "truncated onnx": _truncated,
    "external data missing": _external_data_missing,
    "quantizer on an unsupported op": _quantizer_on_an_unsupported_op,
    "untraceable forward": _untraceable,
    "unknown pass": _unknown_pass,
    "bad option value": _bad_option,
    "pass on the wrong IR": _wrong_ir,
    "NaN calibration data": _nan_calibration,
    "wrong-shape calibration": _wrong_shape_calibration,
    "no calibration batches": _no_batches,
    "state_dict for a module": _state_dict,
    "unwritable output": _unwritable_output,
    "uncalibrated quantizer": _uncalibrated_export,
}


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_bad_input_is_one_line_nonzero_no_traceback_no_output(tmp_path, case):
    args, message = MATRIX[case](tmp_path)
    inputs = {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()}
    if "-o" not in args:
        args = [*args, "-o", str(tmp_path / "out" / "result.onnx")]
    proc = run_bevcc("compile", *args)
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert len([line for line in lines if line.startswith("bevcc: error:")]) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert {p: digest(p) for p in inputs if p.exists()} == inputs  # inputs never modified


def test_opset_9_input_is_upgraded_not_rejected(tmp_path):
    source = tiny_onnx_file(tmp_path, opset=9)
    before = digest(source)
    out = tmp_path / "out.onnx"
    proc = run_bevcc("compile", source, "--pipeline", "onnx(bn_fold,check)", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert digest(source) == before
    assert max(o.version for o in onnx.load(out).opset_import if o.domain in ("", "ai.onnx")) >= 13


def test_all_zero_weight_channels_are_floored_and_reported_not_fatal(tmp_path):
    ref = model_file(
        tmp_path,
        "class M(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 1)\n"
        "        with torch.no_grad():\n            self.conv.weight[1] = 0\n"
        "    def forward(self, x):\n        return self.conv(x)\n"
        "def build():\n    return M().eval(), (torch.ones(1, 3, 4, 4),)\n",
    )
    np.savez(tmp_path / "calib.npz", x=np.ones((2, 3, 4, 4), np.float32))
    out = tmp_path / "o.onnx"
    proc = run_bevcc(
        "compile",
        ref,
        "--calib",
        tmp_path / "calib.npz",
        "--pipeline",
        "fx(qdq_insert),export,onnx(check)",
        "-o",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert "amax floored (all-zero values): conv.weight_quantizer" in proc.stderr


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-big write fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_a_write_that_fails_half_way_leaves_no_file(tmp_path):
    out = tmp_path / "out.onnx"
    exe = Path(sys.executable).with_name("bevcc")
    proc = subprocess.run(
        [str(exe), "compile", "tiny_cnn", "--calib", CALIB, "--pipeline", INT8, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=scaled_timeout(300),  # bevcc compile waits on forked children: end a hang
        preexec_fn=_limit_file_size,
        check=False,
    )
    assert proc.returncode != 0
    assert "writing" in proc.stderr and "failed half-way" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_ctrl_c_during_calibration_leaves_nothing(tmp_path):
    data = tmp_path / "data.py"
    data.write_text(
        "import numpy as np\ndef batches():\n    for i in range(5):\n"
        "        if i == 2:\n            raise KeyboardInterrupt\n"
        "        yield {'x': np.ones((1, 3, 32, 32), np.float32)}\n"
    )
    out = tmp_path / "out" / "o.onnx"
    proc = run_bevcc(
        "compile", "tiny_cnn", "--calib", f"{data}:batches", "--pipeline", INT8, "-o", out
    )
    assert proc.returncode == 130
    assert proc.stderr.strip().splitlines()[-1] == "bevcc: interrupted; no output was written"
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_ctrl_c_during_sensitivity_leaves_no_report_and_the_rerun_resumes(tmp_path, registry):
    import bevcc
    from bevcc.reference.planted import calibration_batches, planted
    from bevcc.sensitivity.metrics import sqnr_db

    calls = {"n": 0}

    def interrupted_after_three(outputs, reference, batches):
        calls["n"] += 1
        if calls["n"] == 5:  # reference score + 3 units measured, then Ctrl-C
            raise KeyboardInterrupt
        return sqnr_db(outputs, reference, batches)

    registry.add_metric("flaky", interrupted_after_three)
    pipeline = "fx(qdq_insert,quantizer_unify,sensitivity_disable{top_k=1,metric=flaky})"
    with pytest.raises(KeyboardInterrupt):
        bevcc.compile(
            planted(),
            pipeline=pipeline,
            calib=calibration_batches(),
            output=tmp_path / "m.pt",
            registry=registry,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sensitivity.jsonl"]  # resume state
    calls["n"] = -100  # no more interruptions
    result = bevcc.compile(
        planted(),
        pipeline=pipeline,
        calib=calibration_batches(),
        output=tmp_path / "m.pt",
        registry=registry,
    )
    # 8 measurements in all, 3 done before the interruption
    assert calls["n"] == -100 + 1 + 5 + 2
    assert result.records[-1].stats["disabled"] == ["probe"]


@pytest.mark.parametrize(
    "pipeline, suffix, model",
    [
        (INT8, "onnx", "tiny_cnn"),
        ("fx(bn_fold,sparse_conv_quant,quantizer_unify),export_libspconv", "onnx", "tiny_sparse"),
    ],
)
def test_compiling_twice_gives_byte_identical_files(tmp_path, pipeline, suffix, model):
    calib = CALIB if model == "tiny_cnn" else str(_sparse_calib(tmp_path))
    outs = []
    for i in range(2):
        out = tmp_path / f"run{i}" / f"o.{suffix}"
        proc = run_bevcc("compile", model, "--calib", calib, "--pipeline", pipeline, "-o", out)
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def _sparse_calib(tmp: Path) -> Path:
    from bevcc.reference.tiny_sparse import random_voxels

    directory = tmp / "sparse_calib"
    directory.mkdir(exist_ok=True)
    for seed in range(1, 4):
        features, coors = random_voxels(seed)
        np.savez(directory / f"{seed}.npz", voxel_features=features.numpy(), coors=coors.numpy())
    return directory
