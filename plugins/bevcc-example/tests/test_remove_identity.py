"""remove_identity, tested as an outside plugin author would: golden graph + onnxruntime numerics."""

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

import bevcc
from bevcc.ir.onnx import OnnxIR


def _model_with_identities():
    """x -> Identity -> Relu -> Identity -> Add(, Identity(x)) -> Identity -> y (graph output)."""
    nodes = [
        helper.make_node("Identity", ["x"], ["x_id"]),
        helper.make_node("Relu", ["x_id"], ["r"]),
        helper.make_node("Identity", ["r"], ["r_id"]),
        helper.make_node("Add", ["r_id", "x_id"], ["s"]),
        helper.make_node("Identity", ["s"], ["y"]),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("x", "y")]
    graph = helper.make_graph(nodes, "identities", [io[0]], [io[1]])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options)
    return session.run(None, {"x": x})[0]


def test_identities_are_bypassed_but_the_output_name_stays(golden):
    result = bevcc.compile(
        OnnxIR.from_model(_model_with_identities()), pipeline="onnx(remove_identity,check)"
    )
    assert result.records[0].stats == {"removed": 2, "kept_as_output": 1}
    golden("remove_identity", result.ir)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(result.ir.to_model(), x), _run(_model_with_identities(), x))


def test_output_identity_goes_too_when_asked():
    result = bevcc.compile(
        OnnxIR.from_model(_model_with_identities()),
        pipeline="onnx(remove_identity{keep_outputs=false})",
    )
    assert [n.op for n in result.ir.graph.nodes] == ["Relu", "Add"]
    assert result.ir.dump().splitlines()[-2:] == ["%y = Add(%r, %x)", "output %y : float32[2,3]"]


def test_nothing_to_remove_reports_unmodified():
    result = bevcc.compile(
        OnnxIR.from_model(_model_with_identities()),
        pipeline="onnx(remove_identity,remove_identity)",
    )
    assert [r.modified for r in result.records] == [True, False]


def test_a_chain_listed_out_of_order_collapses_to_one_producer():
    # y = Identity(b), b = Identity(a), a = Relu(x), listed back to front.
    nodes = [
        helper.make_node("Identity", ["b"], ["y"]),
        helper.make_node("Identity", ["a"], ["b"]),
        helper.make_node("Relu", ["x"], ["a"]),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("x", "y")]
    model = helper.make_model(
        helper.make_graph(nodes, "chain", [io[0]], [io[1]]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    result = bevcc.compile(
        OnnxIR.from_model(model), pipeline="onnx(remove_identity{keep_outputs=false},check)"
    )
    assert result.ir.dump().splitlines()[1:] == [
        "input %x : float32[2,3]",
        "%y = Relu(%x)",
        "output %y : float32[2,3]",
    ]
