"""A leaf module is opaque to qdq_insert: the layers inside it stay float. The trace error never
steers a user into that silently (it says what a leaf would cost, and never suggests the model
itself as a leaf), and qdq_insert says which leaf hid what: a warning when it quantized something
else, an error when the leaves hid every layer (no all-float file)."""

from __future__ import annotations

import numpy as np
import pytest

from bevcc.errors import InputError
from bevcc.ir.fx import CAPTURE_ONNX_HINT, FxIR
from bevcc.testing import NO_PLUGINS
from tests.conftest import run_bevcc

LEAF_FUNCTION = (
    "make its forward traceable, or put the code that fails in a function registered as a "
    "leaf function (registry.add_leaf_function in the bevcc_register_leaf_modules hook)"
)

MODELS = """\
import torch
from torch import nn

import bevcc


class Body(nn.Module):
    \"\"\"Two convs around data-dependent control flow: untraceable unless it is a leaf.\"\"\"

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 3, 1)

    def forward(self, x):
        y = self.a(x)
        return self.b(y if y.sum() > 0 else -y)


class Net(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.body = Body()
        self.head = nn.Conv2d(3, 2, 1) if head else nn.Identity()

    def forward(self, x):
        return self.head(self.body(x))


class Gated(nn.Module):
    \"\"\"Its own forward is what fails: the model itself cannot be a leaf.\"\"\"

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.conv(x) if x.sum() > 0 else x


if LEAF:
    bevcc.register_leaf_module(Body)


def build(head=True):
    return Net(head).eval(), (torch.ones(1, 3, 4, 4),)


def body_only():
    return build(head=False)


def gated():
    return Gated().eval(), (torch.ones(1, 3, 4, 4),)
"""


@pytest.fixture
def models(tmp_path):
    def write(leaf: bool):
        (tmp_path / "models.py").write_text(f"LEAF = {leaf}\n" + MODELS)
        np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).random((2, 3, 4, 4), "f4"))
        return tmp_path

    return write


def compile_(home, model: str, pipeline: str = "fx(qdq_insert),export"):
    return run_bevcc(
        "compile", f"models.py:{model}", "--pipeline", pipeline, "--calib", "calib.npz",
        "-o", "out.onnx", cwd=home, env_extra=NO_PLUGINS,
    )  # fmt: skip


def test_the_trace_error_says_what_a_leaf_would_keep_float(models):
    proc = compile_(models(leaf=False), "build")
    assert proc.returncode == 1
    assert proc.stderr.startswith("bevcc: error: cannot trace Net: module 'body' (Body) failed: ")
    assert proc.stderr.endswith(
        f"; {LEAF_FUNCTION}: as a leaf module, Body would keep its 2 quantizable layers "
        f"(Conv2d 2) float; {CAPTURE_ONNX_HINT}\n"
    )


def test_the_trace_error_never_suggests_the_model_itself_as_a_leaf(models):
    proc = compile_(models(leaf=False), "gated")
    assert proc.returncode == 1
    assert proc.stderr.startswith("bevcc: error: cannot trace Gated: its forward failed: ")
    assert proc.stderr.endswith(f"; {LEAF_FUNCTION}; {CAPTURE_ONNX_HINT}\n")
    assert "leaf module" not in proc.stderr


def test_a_module_without_layers_may_still_be_a_leaf():
    from tests.test_ir_fx import Net

    with pytest.raises(InputError, match=r"make Gate a leaf module \(bevcc.register_leaf_module"):
        FxIR.trace(Net())


def test_qdq_insert_warns_which_leaf_keeps_layers_float(models):
    proc = compile_(models(leaf=True), "build")
    assert proc.returncode == 0, proc.stderr
    assert (
        "bevcc: warning: qdq_insert: leaf module Body (body) keeps 2 quantizable layers "
        "(Conv2d 2) float: tracing does not look inside a leaf; register only the code that "
        "fails to trace as a leaf function to quantize them\n"
    ) in proc.stderr
    assert "fx(qdq_insert): quantized 1 layers (Conv2d 1)" in proc.stderr


def test_qdq_insert_fails_when_leaves_hide_every_layer(models):
    home = models(leaf=True)
    proc = compile_(home, "body_only")
    assert proc.returncode == 2
    assert proc.stderr == (
        "bevcc: error: pass 'qdq_insert' failed after []: qdq_insert: nothing to quantize: leaf "
        "module Body (body) keeps 2 quantizable layers (Conv2d 2) float: tracing does "
        "not look inside a leaf; register only the code that fails to trace as a leaf function "
        "to quantize them\n"
    )
    assert not (home / "out.onnx").exists()
