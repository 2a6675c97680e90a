"""A file holding a node of a TensorRT plugin's domain (no onnx opset) compiles: writing the IR
back asked onnx for the IR version of every opset it imports, which raised on the plugin's
("Unsupported opset-version", an internal error, exit 70)."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from tests.conftest import run_bevcc


def test_a_plugin_domain_node_compiles_through_the_default_pipeline(tmp_path):
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("ScatterElements_TRT", ["r"], ["y"], name="plugin", domain="trt"),
        ],
        "with_plugin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("trt", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), tmp_path / "in.onnx")
    proc = run_bevcc("compile", tmp_path / "in.onnx", "-o", tmp_path / "out.onnx")
    assert proc.returncode == 0, proc.stderr
    written = onnx.load(str(tmp_path / "out.onnx"))
    assert [(n.domain, n.op_type) for n in written.graph.node] == [
        ("", "Relu"),
        ("trt", "ScatterElements_TRT"),
    ]
    assert {o.domain: o.version for o in written.opset_import} == {"": 17, "trt": 1}
