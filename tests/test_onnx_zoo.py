"""The onnx package's light model zoo (nine real architectures, opset 9, seeded weights) through
onnx(bn_fold,qdq_insert,quantizer_unify): every file compiles with each pass's `modified` claim
checked, lints clean (0 predicted Reformats, 0 encoding errors, all MACs INT8) and keeps
onnxruntime parity with its float file. docs/onnx_zoo.md has the per-model numbers."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import bevcc
from bevcc.lint.checks import lint_model
from tests.conftest import run_bevcc
from tests.zoo_models import light_models, logits, seeded_model, with_outputs

PIPELINE = "onnx(bn_fold,qdq_insert,quantizer_unify)"
# Logits SQNR floor (INT8 file vs float file, dB), per model: the lowest of five held-out images
# measured on a 2-core x86 CPU, minus 3 dB. One fixed image is tested, so only calibration ranges
# that differ in their last bits between CPUs move it (well under 1 dB); the five images spread
# by 2.1 dB at most. vgg19 is lowest: 19 quantized layers in series, no residual path. The
# scale of the middle conv's input made 2x too small costs 2 to 21 dB, 4x: 6 to 29 dB.
SQNR_FLOOR_DB = {
    "light_bvlc_alexnet": 28.0,  # measured 31.1 to 31.6
    "light_densenet121": 29.0,  # 32.3 to 32.6
    "light_inception_v1": 28.5,  # 31.5 to 32.2
    "light_inception_v2": 25.0,  # 28.4 to 29.1
    "light_resnet50": 30.0,  # 33.4 to 33.9
    "light_shufflenet": 27.0,  # 30.2 to 32.3
    "light_squeezenet": 33.5,  # 36.5 to 36.9
    "light_vgg19": 24.0,  # 27.3 to 28.3
    "light_zfnet512": 27.5,  # 30.6 to 31.4
}

# Q/DQ pairs quantizer_unify adds to qdq_insert's (one per Conv/Gemm weight, one per distinct
# activation input), derived from each graph:
UNIFY_ADDS = {
    "light_squeezenet": 16,  # 8 fire Concats x 2 inputs (fire9's reaches conv10 through Dropout)
    "light_inception_v1": 32,  # 8 of 9 Concats x 4 inputs; the last feeds only an AveragePool
    "light_inception_v2": 34,  # 9 of 10 Concats (two with 3 inputs); the last feeds AveragePool
    # residual Sums: each identity input is the Relu output the next unit's first conv already
    # quantizes, so the inserted pair merges into that one. ResNet's 4 downsampling Sums join two
    # convs: the one TensorRT would not fuse with the Sum needs a scale nothing calibrated, and
    # the ONNX pass leaves it float (and says so)
    "light_resnet50": 0,
    "light_shufflenet": 0,
}
# The large fully-connected models (alexnet 61M, zfnet512 62M, vgg19 144M weights: 240 to 550 MB
# files) take 20 to 80 s each on 2 cores: BEVCC_ZOO=all runs them too.
LARGE = {"light_bvlc_alexnet", "light_zfnet512", "light_vgg19"}


def _ort_run(model: onnx.ModelProto, image: np.ndarray) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # IR-3 files list initializers as inputs: a warning per file
    session = ort.InferenceSession(model.SerializeToString(), options)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: image}), strict=True))


def _images(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(count)]


def _sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    noise = np.sum((reference.astype(np.float64) - value) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / noise))


def _data_input(model: onnx.ModelProto) -> str:
    initializers = {t.name for t in model.graph.initializer}
    (name,) = [i.name for i in model.graph.input if i.name not in initializers]
    return name


def _expected(model: onnx.ModelProto) -> dict:
    """What the pipeline must do, counted on the float graph alone."""
    initializers = {t.name for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    layers = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    weights = sum(n.input[1] in initializers for n in layers)
    activations = {n.input[0] for n in layers} | {
        n.input[1] for n in layers if n.input[1] not in initializers
    }
    folds = sum(
        n.op_type == "BatchNormalization" and producer[n.input[0]].op_type == "Conv"
        for n in model.graph.node
    )
    counts = {op: sum(n.op_type == op for n in layers) for op in ("Conv", "Gemm")}
    return {
        "quantized": {k: v for k, v in counts.items() if v},
        "folds": folds,
        "qdq_insert": weights + len(activations),
    }


def logits_sqnr_db(float_model: onnx.ModelProto, quantized: onnx.ModelProto) -> float:
    """SQNR of the INT8 file's logits (the Softmax input, or the output where there is none)
    against the float file's, on one held-out image. Adds the logits to both models' outputs."""
    outputs = logits(float_model) or [float_model.graph.output[0].name]
    image = _images(seed=99, count=1)[0]  # held out: calibration uses seed 1
    reference = _ort_run(with_outputs(float_model, outputs), image)[outputs[0]]
    return _sqnr_db(reference, _ort_run(with_outputs(quantized, outputs), image)[outputs[0]])


def check_zoo_file(name: str, float_model, quantized, lint: dict, seconds: float) -> None:
    """Lint and parity checks shared by the in-process and CLI tests; prints the table row."""
    expected = _expected(float_model)
    pairs = expected["qdq_insert"] + UNIFY_ADDS.get(name, 0)
    assert (lint["predicted_reformats"], lint["encoding_problems"]) == (0, [])
    assert (lint["qdq_pairs"], lint["int8_mac_share"], lint["errors"]) == (pairs, 1.0, 0)
    assert sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node) == pairs
    sqnr = logits_sqnr_db(float_model, quantized)
    assert sqnr >= SQNR_FLOOR_DB[name], f"{name}: logits SQNR {sqnr:.1f} dB"
    row = {
        "model": name,
        "nodes": (len(float_model.graph.node), len(quantized.graph.node)),
        "qdq_pairs": pairs,
        "sqnr_db": round(sqnr, 1),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(row))


@pytest.fixture
def zoo_file(tmp_path):
    """(float model, its file, a directory of two seeded 1x3x224x224 .npz batches)."""

    def make(name: str):
        model = seeded_model(name)
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, path)
        calib = tmp_path / "calib"
        calib.mkdir()
        for index, image in enumerate(_images(seed=1, count=2)):
            np.savez(calib / f"{index}.npz", **{_data_input(model): image})
        return model, path, calib

    return make


def _params():
    run_all = os.environ.get("BEVCC_ZOO") == "all"
    skip = pytest.mark.skip(reason="large FC model: set BEVCC_ZOO=all to run it")
    return [
        pytest.param(n, marks=() if run_all or n not in LARGE else skip)
        for n in light_models()
        if n != "light_squeezenet"
    ]  # squeezenet: the CLI test


def test_the_corpus_is_the_installed_light_zoo():
    """A zoo file added or dropped by an onnx upgrade shows here (and needs a UNIFY_ADDS look)."""
    assert light_models() == [
        "light_bvlc_alexnet",
        "light_densenet121",
        "light_inception_v1",
        "light_inception_v2",
        "light_resnet50",
        "light_shufflenet",
        "light_squeezenet",
        "light_vgg19",
        "light_zfnet512",
    ]
    model = seeded_model("light_squeezenet")  # stubs become initializers; the rest is kept
    assert not [n for n in model.graph.node if n.op_type == "ConstantOfShape"]
    assert _data_input(model) == "data_0"
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize("name", _params())
def test_light_model_compiles_lints_clean_and_keeps_parity(name, zoo_file, tmp_path, registry):
    model, path, calib = zoo_file(name)
    out = tmp_path / "int8.onnx"
    start = time.perf_counter()
    # check_modified is on: a pass that changes the IR while reporting modified=False fails here
    result = bevcc.compile(
        str(path), pipeline=PIPELINE, calib=str(calib), output=out, registry=registry
    )
    seconds = time.perf_counter() - start
    expected = _expected(model)
    bn_fold, qdq_insert, _ = (r.stats for r in result.records)
    assert sum(bn_fold["folded"].values()) == expected["folds"] and bn_fold["skipped"] == []
    assert qdq_insert["quantized"] == expected["quantized"] and qdq_insert["batches"] == 2
    assert qdq_insert["quantizers"] == expected["qdq_insert"]
    quantized = onnx.load(out)
    check_zoo_file(name, model, quantized, lint_model(quantized).to_json(), seconds)


def test_squeezenet_through_the_cli(zoo_file, tmp_path):
    """The real console script, compile then `lint --json`, as a user runs them."""
    model, path, calib = zoo_file("light_squeezenet")
    out = tmp_path / "int8.onnx"
    start = time.perf_counter()
    proc = run_bevcc("compile", path, "--pipeline", PIPELINE, "--calib", calib, "-o", out)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert (
        "inserted on Add inputs 0, on Concat inputs 16; left float (no scale known): none"
        in proc.stderr
    )
    lint = run_bevcc("lint", out, "--json")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    quantized = onnx.load(out)
    check_zoo_file("light_squeezenet", model, quantized, json.loads(lint.stdout), seconds)
    # the parity floor has teeth: conv 13 of 26 reading its input at half the scale fails it
    producers = {o: n for n in quantized.graph.node for o in n.output}
    conv = [n for n in quantized.graph.node if n.op_type == "Conv"][13]
    scale = next(
        t for t in quantized.graph.initializer if t.name == producers[conv.input[0]].input[1]
    )
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) / 2, scale.name))
    assert logits_sqnr_db(model, quantized) < SQNR_FLOOR_DB["light_squeezenet"] - 10


def test_squeezenet_typed_for_tensorrt_11_keeps_its_int8_layers_and_numbers(zoo_file, tmp_path):
    """strong_typing on a file nobody here wrote (the zoo's squeezenet, its Concats sharing
    scales): every conv stays INT8 with fp16 scales, lint finds the file typed and clean, and
    onnxruntime computes what the float32 Q/DQ file computes."""
    import numpy as np
    import onnxruntime as ort

    model, path, calib = zoo_file("light_squeezenet")
    int8, typed = tmp_path / "int8.onnx", tmp_path / "typed.onnx"
    for out, pipeline in ((int8, PIPELINE), (typed, PIPELINE[:-1] + ",strong_typing)")):
        proc = run_bevcc("compile", path, "--pipeline", pipeline, "--calib", calib, "-o", out)
        assert proc.returncode == 0, proc.stderr
    report = lint_model(onnx.load(typed))
    assert report.errors == 0 and report.typing.declared == "fp16" and not report.typing.errors
    convs = [layer for layer in report.typing.layers if layer.op == "Conv"]
    assert {"Conv": len(convs)} == _expected(model)["quantized"] == {"Conv": 26}
    assert {layer.precision for layer in convs} == {"int8"}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    from bevcc.data import CalibData

    x = {k: np.asarray(v) for k, v in CalibData(str(calib)).first().items()}
    a, b = (
        ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]).run(None, x)[0]
        for p in (int8, typed)
    )
    sqnr = 10 * np.log10(
        (a.astype(np.float64) ** 2).sum() / ((a - b).astype(np.float64) ** 2).sum()
    )
    assert sqnr >= 25, sqnr
