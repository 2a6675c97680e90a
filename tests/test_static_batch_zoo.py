"""A model-zoo ONNX file (static 1x3x224x224) calibrated from one N-sample .npz through the CLI:
what a user with a downloaded file and a folder of samples does first."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort

from tests.conftest import run_bevcc
from tests.zoo_models import seeded_model


def _run(path, images: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: images[i : i + 1]})[0] for i in range(len(images))]
    )


def test_squeezenet_calibrates_on_an_n_sample_npz(tmp_path):
    model = seeded_model("light_squeezenet")
    source = tmp_path / "squeezenet.onnx"
    onnx.save(model, str(source))
    before = source.read_bytes()
    (input_name,) = [
        i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}
    ]
    rng = np.random.default_rng(0)
    samples = rng.uniform(0, 1, (5, 3, 224, 224)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", **{input_name: samples})
    out = tmp_path / "squeezenet.int8.onnx"
    result = run_bevcc(
        "compile",
        source,
        "--pipeline",
        "onnx(bn_fold,qdq_insert,quantizer_unify)",
        "--calib",
        tmp_path / "calib.npz",
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert "calibrated on 5 batches" in result.stderr  # five batches of the file's one sample
    assert source.read_bytes() == before  # the input file is never modified
    lint = run_bevcc("lint", out, "--json")
    report = json.loads(lint.stdout)
    assert (lint.returncode, report["errors"], report["predicted_reformats"]) == (0, 0, 0)
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 26
    # 26 weight quantizers, 18 activation ones (a fire module's two expand convs read one squeeze
    # output through one Q/DQ), and the 16 quantizer_unify puts on the 8 fire Concats' inputs
    # (test_onnx_zoo derives it): 26 + 18 + 16
    assert sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node) == 60
    want, got = _run(source, samples), _run(out, samples)
    sqnr = 10 * np.log10(np.sum(want**2) / np.sum((want - got) ** 2))
    assert sqnr > 28, sqnr  # 31.4 dB measured
