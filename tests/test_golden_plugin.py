"""The golden-graph pytest plugin, run as a plugin author would run it (pytester)."""

TEST_FILE = """
from bevcc.ir.onnx import OnnxIR
import onnx
from onnx import TensorProto, helper

def model(op):
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return OnnxIR.from_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))

def test_graph(golden):
    golden("relu_graph", model(OP))
"""


def _write(pytester, op):
    pytester.makepyfile(test_graph=TEST_FILE.replace("OP", repr(op)))


def test_missing_golden_fails_then_update_creates_it(pytester):
    _write(pytester, "Relu")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [("*golden file *relu_graph.txt does not exist; run pytest --bevcc-update-goldens*")]
    )
    pytester.runpytest("--bevcc-update-goldens").assert_outcomes(passed=1)
    written = (pytester.path / "golden" / "relu_graph.txt").read_text()
    assert written == (
        "onnx opset ai.onnx=17\ninput %x : float32[2]\n%y = Relu(%x)\noutput %y : float32[2]\n"
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_changed_output_fails_with_a_diff_and_update_rewrites(pytester):
    _write(pytester, "Relu")
    pytester.runpytest("--bevcc-update-goldens").assert_outcomes(passed=1)
    _write(pytester, "Sigmoid")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*output differs from golden*relu_graph.txt*", "-%y = Relu(%x)", "+%y = Sigmoid(%x)"]
    )
    pytester.runpytest("--bevcc-update-goldens").assert_outcomes(passed=1)
    assert "%y = Sigmoid(%x)" in (pytester.path / "golden" / "relu_graph.txt").read_text()
    pytester.runpytest().assert_outcomes(passed=1)


def test_golden_directory_is_configurable(pytester):
    pytester.makeini("[pytest]\nbevcc_golden_dir = expected/graphs\n")
    _write(pytester, "Relu")
    pytester.runpytest("--bevcc-update-goldens").assert_outcomes(passed=1)
    assert (pytester.path / "expected" / "graphs" / "relu_graph.txt").is_file()
