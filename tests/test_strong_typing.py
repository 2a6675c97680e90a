"""onnx(strong_typing) on hand-made graphs whose fp16 fate is known: exactly the layers fp16
cannot hold stay fp32, each with its reason; the file states its typing in its metadata; it
computes what the fp32 file computes (onnxruntime); and lint reads the precisions back."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import bevcc
from bevcc.lint.checks import lint_model
from bevcc.trt.typing import FLOAT_PRECISION_KEY, FP32_NODES_KEY

pytest.importorskip("modelopt.onnx.autocast")


def _graph(gain: float, big_weight: bool = False) -> onnx.ModelProto:
    """x -> conv1 -> Mul(gain) -> relu -> conv2 -> y. With gain 1e5 the Mul's output (about
    1e5) overflows fp16: the Mul, the Relu that reads and writes it, and conv2 that reads it must
    stay fp32; conv1 computes in range and goes fp16."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((2, 4, 1, 1)).astype(np.float32) * (1e5 if big_weight else 0.3)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["a", "gain"], ["b"], name="scale"),
        helper.make_node("Relu", ["b"], ["c"], name="relu"),
        helper.make_node("Conv", ["c", "w2"], ["y"], name="conv2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(np.array(gain, np.float32), "gain"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _calib():
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]


def _max_b() -> float:
    """The largest |b| (conv1's output times the gain) on the calibration batches, by onnxruntime."""
    model = _graph(gain=1e5)
    model.graph.output.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options)
    return max(float(np.abs(session.run(["b"], batch)[0]).max()) for batch in _calib())


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options)
    return session.run(None, {"x": x})[0]


def _typed(model, **options) -> tuple[onnx.ModelProto, dict]:
    text = ",".join(f"{k}={v}" for k, v in options.items())
    pipeline = f"onnx(strong_typing{{{text}}},check)" if text else "onnx(strong_typing,check)"
    result = bevcc.compile(model, pipeline, calib=_calib())
    return result.ir.to_model(), result.records[0].stats


def test_in_range_graph_is_all_fp16_and_computes_the_fp32_result():
    model = _graph(gain=2.0)
    typed, stats = _typed(model)
    assert stats["fp32_nodes"] == []
    meta = {p.key: p.value for p in typed.metadata_props}
    assert meta[FLOAT_PRECISION_KEY] == "fp16" and json.loads(meta[FP32_NODES_KEY]) == {}
    weights = {t.name: t.data_type for t in typed.graph.initializer}
    assert weights["w1"] == weights["w2"] == TensorProto.FLOAT16
    x = _calib()[0]["x"]
    want, got = _run(model, x), _run(typed, x)
    assert got.dtype == np.float32  # io=fp32: Casts at the boundary keep the interface
    assert np.abs(got - want).max() <= 2e-3 * np.abs(want).max()
    layers = {layer.node: layer.precision for layer in lint_model(typed).typing.layers}
    assert layers == {"conv1": "fp16", "conv2": "fp16"}


def test_layers_whose_activations_overflow_fp16_stay_fp32_with_the_reason():
    typed, stats = _typed(_graph(gain=1e5))
    reasons = {row["node"]: row["reason"] for row in stats["fp32_nodes"]}
    assert set(reasons) == {"scale", "relu", "conv2"}  # conv1 computes in range
    assert reasons["scale"] == "weight gain reaches 1e+05, over fp16's 65504"  # its constant
    assert reasons["relu"] == (
        f"input b reaches {_max_b():.4g} on the calibration data, over fp16's 65504"
    )
    report = lint_model(typed)
    layers = {layer.node: (layer.precision, layer.reason) for layer in report.typing.layers}
    assert layers["conv1"] == ("fp16", None)
    assert layers["conv2"][0] == "fp32" and layers["conv2"][1] == reasons["conv2"]
    assert report.typing.errors == []  # every fp32 layer has its recorded reason


def test_a_weight_beyond_fp16_keeps_its_layer_fp32():
    _, stats = _typed(_graph(gain=1.0, big_weight=True), max_batches=1)
    reasons = {row["node"]: row["reason"] for row in stats["fp32_nodes"]}
    assert "conv2" in reasons and reasons["conv2"].startswith("weight w2 reaches")


def test_keep_fp32_and_fp16_io():
    typed, stats = _typed(_graph(gain=2.0), keep_fp32="conv1", io="fp16")
    assert [row["node"] for row in stats["fp32_nodes"]] == ["conv1"]
    assert typed.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16


def test_lint_calls_an_fp32_layer_without_a_reason_an_error_in_an_fp16_file():
    typed, _ = _typed(_graph(gain=2.0), keep_fp32="conv1")
    for prop in typed.metadata_props:
        if prop.key == FP32_NODES_KEY:
            prop.value = "{}"  # as if the reason had been lost
    report = lint_model(typed)
    assert report.typing.errors == [
        (
            "conv1 (Conv) computes in fp32 in a file declared fp16, and the file records no "
            "reason for it"
        )
    ]
    assert report.errors == 1


def _weakly_typed_qdq() -> onnx.ModelProto:
    """A Q/DQ file as the peer tools write it (CUDA-BEVFusion's, onnxruntime's): fp32 scales,
    fp32 tensors everywhere; INT8 conv1, float conv2."""
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.integers(-127, 127, (4, 3, 3, 3)).astype(np.int8), "wq")
    w2 = numpy_helper.from_array(rng.standard_normal((2, 4, 1, 1)).astype(np.float32), "w2")
    scale = numpy_helper.from_array(np.array(0.02, np.float32), "s")
    wscale = numpy_helper.from_array(np.full(4, 0.01, np.float32), "ws")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    wzero = numpy_helper.from_array(np.zeros(4, np.int8), "wz")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="wdq", axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["a"], ["a16"], name="down", to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["a16"], ["a32"], name="up", to=TensorProto.FLOAT),
        helper.make_node("Conv", ["a32", "w2"], ["y"], name="conv2"),
    ]
    graph = helper.make_graph(
        nodes,
        "peer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])],
        [w, w2, scale, wscale, zero, wzero],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_lint_tells_a_weakly_typed_peer_file_where_it_builds_and_finds_cancelling_casts():
    typing = lint_model(_weakly_typed_qdq()).typing
    assert typing.declared is None and typing.weakly_typed
    assert {layer.node: layer.precision for layer in typing.layers} == {
        "conv1": "int8",
        "conv2": "fp32",
    }
    # conv1: 4x8x8 outputs x 3x3x3 weights; conv2: 2x8x8 outputs x 4x1x1
    assert typing.mac_shares()["int8"] == pytest.approx(6912 / (6912 + 512), abs=1e-6)
    (weak, casts) = typing.warnings
    assert weak.startswith("weakly typed:") and "TensorRT <= 10 with --int8 --fp16" in weak
    assert casts.startswith("Casts down and up cancel out (fp32 -> fp16 -> fp32)")
    assert typing.errors == []  # a peer's file declares nothing: nothing to hold it to


def test_lint_finds_an_fp16_tensor_calibrated_past_fp16s_range_from_its_scale():
    """The file carries calibrated ranges as Q scales: 600 x 127 = 76200 > 65504 for an fp16
    tensor is an error; the same tensor at scale 500 (63500) is not."""

    def model(scale: float) -> onnx.ModelProto:
        nodes = [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"], name="q"),
            helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y"], name="dq"),
        ]
        inits = [
            numpy_helper.from_array(np.array(scale, np.float16), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ]
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT16, [1, 4]) for n in ("x", "y")]
        graph = helper.make_graph(nodes, "calibrated", io[:1], io[1:], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])

    assert lint_model(model(600.0)).typing.errors == [
        (
            "QuantizeLinear q: r is fp16 but was calibrated to +-7.62e+04 (its scale), past "
            "fp16's largest value 65504; keep the layer that produces it fp32"
        )
    ]
    assert lint_model(model(500.0)).typing.errors == []
