"""Following a leaf-module hint for SwinBlock would leave every block's Linear layers float: the
trace error says so and points at a leaf function instead, and qdq_insert warns when a leaf
SwinBlock hides them anyway."""

import pytest

import bevcc
from bevcc.plugins import load_plugins
from bevcc.testing import run_bevcc

BUILD = """\
import bevcc
from bevcc_swin.model import SwinBlock
from bevcc_swin.reference import swin_tiny_camera

bevcc.register_leaf_module(SwinBlock)  # what the old hint said: the blocks become opaque


def build():
    return swin_tiny_camera()
"""


def test_the_trace_error_says_a_leaf_swin_block_keeps_its_linears_float(swin):
    core_only = load_plugins(autoload=False).registry
    with pytest.raises(bevcc.InputError) as failure:
        bevcc.compile(swin, pipeline="fx(dce)", registry=core_only)
    message = str(failure.value)
    assert message.startswith(
        "cannot trace SwinBackbone: module 'stages.0.1' (SwinBlock) failed: int() argument"
    )
    assert message.endswith(
        "; make its forward traceable, or put the code that fails in a function registered as a "
        "leaf function (registry.add_leaf_function in the bevcc_register_leaf_modules hook): as "
        "a leaf module, SwinBlock would keep its 4 quantizable layers (Linear 4) float; or leave "
        "the model as it is and let bevcc capture it as ONNX (torch.export) instead of tracing "
        "it: start the pipeline with onnx(...) where it starts with fx(...) (docs/capture.md)"
    )
    assert "bevcc.register_leaf_module(" not in message


def test_qdq_insert_warns_that_leaf_swin_blocks_stay_float(tmp_path):
    (tmp_path / "build.py").write_text(BUILD)
    proc = run_bevcc(
        "compile", "build.py:build", "--calib", "bevcc_swin.reference:calibration_batches",
        "--pipeline", "fx(qdq_insert),export", "-o", "swin.onnx", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        "bevcc: warning: qdq_insert: leaf module SwinBlock (stages.0.0, stages.0.1, stages.1.0, "
        "+1 more) keeps 16 quantizable layers (Linear 16) float: tracing does not look inside a "
        "leaf; register only the code that fails to trace as a leaf function to quantize them\n"
    ) in proc.stderr
    # only the patch embedding and the patch merging are left to quantize
    assert "fx(qdq_insert): quantized 2 layers (Conv2d 1, Linear 1)" in proc.stderr
