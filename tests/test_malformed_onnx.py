"""A graph onnx 1.21's shape inference aborts on (a Conv fed a rank-2 tensor) is one error line
from every command that infers shapes on a user's file, never a dead interpreter (SIGABRT)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bevcc.ir.onnx_shapes import InferenceCrash, infer_shapes
from tests.conftest import run_bevcc

CRASH = (
    "onnx shape inference crashes (SIGABRT) on node 'conv' (Conv) fed flat [1, 48], "
    "w [2, 48, 1, 1]: its inputs do not fit the op (e.g. an input rank that differs from its "
    "weight's); fix the exporter or the edit that produced it"
)


def flatten_then_conv(path):
    """x[1,3,4,4] -> Flatten -> [1,48] -> Conv with a rank-4 weight: valid to onnx.checker."""
    weight = numpy_helper.from_array(np.ones((2, 48, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], name="flatten"),
            helper.make_node("Conv", ["flat", "w"], ["y"], name="conv"),
        ],
        "malformed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_lint_says_which_node_in_one_line(tmp_path):
    path = flatten_then_conv(tmp_path / "bad.onnx")
    proc = run_bevcc("lint", path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == f"bevcc: error: {path}: {CRASH}\n"


# the verifier checks the input before the first pass: the input is blamed, not cleanup
INPUT = (
    "{path}: the input is invalid before any pass ran (onnx verifier: {crash}); re-export it or "
    "fix what produced it (onnx.checker.check_model(FILE, full_check=True) is the same check)"
)
CHECK_PASS = "pass 'check' failed after [cleanup]: IRInvalid: onnx graph is invalid: {crash}"
CALIBRATION = "pass 'qdq_insert' failed after []: {crash}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pipeline", "onnx(cleanup)"], INPUT),
        (["--pipeline", "onnx(cleanup,check)", "--no-verify"], CHECK_PASS),
        (["--pipeline", "onnx(qdq_insert)", "--no-verify", "--calib", "CALIB"], CALIBRATION),
    ],
    ids=["verifier", "check pass", "onnxruntime calibration"],
)
def test_compile_fails_in_one_line_and_writes_nothing(tmp_path, args, message):
    path = flatten_then_conv(tmp_path / "bad.onnx")
    np.savez(tmp_path / "calib.npz", x=np.ones((1, 3, 4, 4), np.float32))
    args = [str(tmp_path / "calib.npz") if a == "CALIB" else a for a in args]
    out = tmp_path / "out" / "result.onnx"
    proc = run_bevcc("compile", path, *args, "-o", out)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"bevcc: error: {message.format(path=path, crash=CRASH)}\n"
    assert not out.parent.exists()


def test_inference_on_a_sound_model_is_onnx_own(tmp_path):
    model = onnx.load(flatten_then_conv(tmp_path / "bad.onnx"))
    del model.graph.node[1:]  # Flatten alone: onnx infers it in-process without harm
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("flat", TensorProto.FLOAT, None))
    assert infer_shapes(model) == onnx.shape_inference.infer_shapes(model)


def test_the_crash_is_an_inference_error_callers_already_catch(tmp_path):
    model = onnx.load(flatten_then_conv(tmp_path / "bad.onnx"))
    with pytest.raises(onnx.shape_inference.InferenceError) as raised:
        infer_shapes(model)
    assert isinstance(raised.value, InferenceCrash)
    assert str(raised.value) == CRASH


def reads_an_undefined_tensor(path):
    """Conv then an Add whose second input no node, input or initializer defines."""
    weight = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
            helper.make_node("Add", ["c", "ghost"], ["y"], name="add"),
        ],
        "undefined_input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_an_invalid_input_is_blamed_on_the_input_not_on_the_first_pass(tmp_path):
    path = reads_an_undefined_tensor(tmp_path / "bad.onnx")
    out = tmp_path / "out" / "result.onnx"
    proc = run_bevcc(
        "compile", path, "-o", out
    )  # the default pipeline: onnx(simplify,cleanup,check)
    assert proc.returncode == 1
    ghost = (
        "Nodes in a graph must be topologically sorted, however input 'ghost' of node: "
        "name: add OpType: Add is not output of any previous nodes."
    )  # the checker's three lines, as one
    assert proc.stderr == f"bevcc: error: {INPUT.format(path=path, crash=ghost)}\n"
    assert not out.parent.exists()
