"""Real data: a CNN trained here on scikit-learn's digits keeps its accuracy in INT8 (PTQ on both
IRs and in the deployed files), and the QAT example fine-tunes and re-exports."""

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import bevcc
from bevcc.plugins import load_plugins
from bevcc.quant.encoding_check import check_encoding
from bevcc.reference.digits import accuracy, calibration_batches, trained_digits_net

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    return trained_digits_net()


def deployed(path):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options)
    return lambda images: session.run(None, {"image": np.asarray(images)})[0]


def test_ptq_int8_accuracy_within_half_a_point_of_float(tmp_path, digits):
    registry = load_plugins(autoload=False).registry
    model, example, (train_x, _), (test_x, test_y) = digits
    calib = calibration_batches(train_x)
    fx_file, float_file, onnx_file = (tmp_path / n for n in ("fx.onnx", "float.onnx", "o.onnx"))
    fake_quant = bevcc.compile(
        (model, example), pipeline="fx(bn_fold,qdq_insert)", calib=calib, registry=registry
    ).ir
    bevcc.compile(
        fake_quant, pipeline="export{dynamic_batch=true}", output=fx_file, registry=registry
    )
    bevcc.compile(
        (model, example),
        pipeline="fx(bn_fold),export{dynamic_batch=true}",
        output=float_file,
        registry=registry,
    )
    bevcc.compile(
        str(float_file),
        pipeline="onnx(qdq_insert)",
        calib=calib,
        output=onnx_file,
        registry=registry,
    )
    scores = {
        "float": accuracy(model, test_x, test_y),
        "fake-quant": accuracy(fake_quant.module, test_x, test_y),
        "fx path file": accuracy(deployed(fx_file), test_x, test_y),
        "onnx path file": accuracy(deployed(onnx_file), test_x, test_y),
    }
    print(scores)  # the closing note quotes these (pytest -s)
    assert scores["float"] > 0.95  # a model worth quantizing
    for name, score in scores.items():
        assert abs(score - scores["float"]) <= 0.005, (name, scores)
    for path in (fx_file, onnx_file):
        assert check_encoding(onnx.load(path)) == []


def test_qat_example_fine_tunes_and_the_reexported_file_matches(tmp_path):
    spec = importlib.util.spec_from_file_location("qat_digits", ROOT / "examples/qat_digits.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(steps=20, out=tmp_path, registry=load_plugins(autoload=False).registry)
    assert results["qat deployed file"] == results["qat"]
    assert results["qat"] >= results["float"] - 0.005
    emitted = onnx.load(results["file"])
    assert sum(n.op_type == "QuantizeLinear" for n in emitted.graph.node) == 8
    assert check_encoding(emitted) == []
