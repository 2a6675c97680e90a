"""`bevcc lint` warns where a graph passes TensorRT's documented operator limits that perception
heads reach, quoting the limit: a CenterPoint-style head's TopK over classes x H x W (K = 10 x
180 x 180) is far above TensorRT's K <= 3840; its usual K = 200 is fine. Warnings are not
errors (exit 0), and --json gains a "warnings" key beside the ones it had."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import run_bevcc

CLASSES, H, W = 10, 180, 180
JSON_KEYS = {  # the keys --json had before: kept as they were
    "path", "kind", "qdq_pairs", "predicted_reformats", "mismatches", "encoding_problems",
    "int8_macs", "total_macs", "int8_mac_share", "float_layers", "int8_layers", "layers",
    "errors",
}  # fmt: skip


def heatmap_topk(path, k: int):
    """Heatmap [1, classes, H, W] -> Sigmoid -> flattened to [1, classes*H*W] -> TopK(k)."""
    graph = helper.make_graph(
        [
            helper.make_node("Sigmoid", ["heatmap"], ["scores"], name="/head/Sigmoid"),
            helper.make_node("Reshape", ["scores", "flat_shape"], ["flat"], name="/head/Reshape"),
            helper.make_node("TopK", ["flat", "k"], ["top", "index"], name="/head/TopK", axis=1),
        ],
        "center_head",
        [helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, [1, CLASSES, H, W])],
        [
            helper.make_tensor_value_info("top", TensorProto.FLOAT, [1, k]),
            helper.make_tensor_value_info("index", TensorProto.INT64, [1, k]),
        ],
        [
            numpy_helper.from_array(np.array([1, CLASSES * H * W], np.int64), "flat_shape"),
            numpy_helper.from_array(np.array([k], np.int64), "k"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


TOO_MANY = (
    "TopK '/head/TopK': K = 324000 exceeds TensorRT's limit k <= 3840 (TensorRT operator "
    "reference, TopK; 1024 before TensorRT 10): the engine build rejects it; select in two "
    "stages (a TopK per class or per row, then one over their results) or lower K"
)


def test_topk_over_classes_times_h_times_w_is_a_warning_quoting_the_limit(tmp_path):
    path = heatmap_topk(tmp_path / "head.onnx", k=CLASSES * H * W)
    proc = run_bevcc("lint", path)
    assert proc.returncode == 0, proc.stderr  # a warning, not an error
    assert f"warnings:\n  {TOO_MANY}\n" in proc.stdout
    report = json.loads(run_bevcc("lint", "--json", path).stdout)
    assert report["warnings"] == [TOO_MANY]
    assert set(report) >= JSON_KEYS and report["errors"] == 0


@pytest.mark.parametrize("k", [200, 3840])
def test_a_topk_within_the_limit_gets_no_warning(tmp_path, k):
    path = heatmap_topk(tmp_path / "head.onnx", k=k)
    proc = run_bevcc("lint", "--json", path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["warnings"] == []
    assert "warnings:" not in run_bevcc("lint", path).stdout


def test_a_nine_dimensional_tensor_and_an_oversized_topk_input_are_warnings(tmp_path):
    """Shapes alone decide (no data is made): a Reshape to rank 9, and a TopK over a declared
    [2, 2^30] input (2^31 elements) on its first axis of a rank-6 view."""
    big = [1, 1, 1, 1, 2, 2**30]
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "nine"], ["x9"], name="/to_rank9"),
            helper.make_node("TopK", ["big", "k"], ["top", "index"], name="/topk", axis=0),
        ],
        "limits",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("big", TensorProto.FLOAT, big),
        ],
        [
            helper.make_tensor_value_info("x9", TensorProto.FLOAT, [1] * 8 + [6]),
            helper.make_tensor_value_info("top", TensorProto.FLOAT, [1, *big[1:]]),
            helper.make_tensor_value_info("index", TensorProto.INT64, [1, *big[1:]]),
        ],
        [
            numpy_helper.from_array(np.array([1] * 8 + [6], np.int64), "nine"),
            numpy_helper.from_array(np.array([1], np.int64), "k"),
        ],
    )
    path = tmp_path / "limits.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    proc = run_bevcc("lint", "--json", path)
    assert proc.returncode == 0, proc.stderr
    rank = "tensor 'x9' has 9 dimensions: at most 8 dimensions (Dims::MAX_DIMS) (TensorRT C++ API, "
    rank += "nvinfer1::Dims64)"
    axis = "TopK '/topk': it reduces axis 0 of a rank-6 input; the axis must be one of the last "
    axis += "four dimensions (TensorRT operator reference, TopK): transpose or reshape so the axis "
    axis += "is among the last four"
    volume = (
        "TopK '/topk': its input has 2147483648 elements; TensorRT's TopK takes at most 2^31-1 "
    )
    volume += "elements (TensorRT operator reference, TopK): split the input"
    assert json.loads(proc.stdout)["warnings"] == [rank, axis, volume]
