"""The plugin as users meet it: `bevcc plugins`, `bevcc compile` with its passes, bad input."""

import onnx

from bevcc.lint.checks import lint_model
from bevcc.testing import run_bevcc

PIPELINE = "fx(bn_fold,qdq_insert,quantizer_unify,attention_qdq),export,onnx(mha_check,check)"


def test_bevcc_plugins_lists_what_the_plugin_adds():
    proc = run_bevcc("plugins")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("swin 0.1.0 (bevcc_swin.plugin)")
    block = lines[start + 1 : start + 5]
    assert (
        block
        == [
            "  leaf_functions: bevcc_swin.windows.shifted_window_mask",
            "  models: swin_tiny_camera",
            "  passes: fx:attention_qdq, onnx:attention_qdq, onnx:mha_check",
        ]
        + block[3:]
    )


def test_compile_by_name_writes_a_lint_clean_mha_ready_file(tmp_path):
    out = tmp_path / "swin.int8.onnx"
    proc = run_bevcc(
        "compile",
        "swin_tiny_camera",
        "--calib",
        "bevcc_swin.reference:calibration_batches",
        "--pipeline",
        PIPELINE,
        "-o",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "fx(attention_qdq): attention blocks 4: removed 12 score-path quantizers, fixed 4 "
        "softmax quantizers at amax 1.0"
    ) in proc.stderr
    report = lint_model(onnx.load(out), str(out))
    assert report.errors == 0 and report.qdq_pairs == 63


def test_mha_check_rejects_the_core_only_file_in_one_line(compiled, tmp_path):
    _, _, core_file = compiled["core"]
    out = tmp_path / "checked.onnx"
    proc = run_bevcc("compile", core_file, "--pipeline", "onnx(mha_check)", "-o", out)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(
        "bevcc: error: pass 'mha_check' failed after []: 16 attention Q/DQ problem(s)"
    )
    assert "quantize with fx(qdq_insert,quantizer_unify,attention_qdq)" in proc.stderr
    assert not out.exists()


def test_bad_option_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "never.onnx"
    proc = run_bevcc(
        "compile",
        "swin_tiny_camera",
        "--calib",
        "bevcc_swin.reference:calibration_batches",
        "-o",
        out,
        "--pipeline",
        "fx(qdq_insert,attention_qdq{softmax_amax=2}),export",
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "bevcc: error: pass 'attention_qdq' options: softmax_amax=2.0 is "
        "outside (0, 1]: softmax outputs lie in [0, 1]; write "
        "attention_qdq{softmax_amax=1.0} or none\n"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []
