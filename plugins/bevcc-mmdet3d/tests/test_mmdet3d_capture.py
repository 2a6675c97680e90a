"""Models FX cannot trace, from the installed OpenMMLab packages, through `bevcc compile` as a user
runs it: mmdet's SwinTransformer (BEVFusion's camera backbone) captured as ONNX, quantized,
lint clean and close to the PyTorch model in onnxruntime."""

import json
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bevcc.testing import run_bevcc

BUILD = textwrap.dedent(
    """
    import torch
    from bevcc_mmdet3d import mm

    SWIN = dict(type="mmdet.SwinTransformer", embed_dims=32, depths=(2, 2), num_heads=(1, 2),
                window_size=7, out_indices=(0, 1), drop_path_rate=0.0)

    def build():
        torch.manual_seed(0)
        model = mm.build(SWIN)
        model.eval()  # SwinTransformer.train returns None, so not `return model.eval()`
        return model, (torch.randn(1, 3, 64, 96),)

    def calib():
        g = torch.Generator().manual_seed(1)
        return [{"x": torch.randn(1, 3, 64, 96, generator=g).numpy()} for _ in range(4)]
    """
)
PIPELINE = "onnx(bn_fold,qdq_insert,quantizer_unify,check)"


@pytest.fixture(scope="module")
def swin(tmp_path_factory):
    home = tmp_path_factory.mktemp("swin")
    (home / "build.py").write_text(BUILD)
    proc = run_bevcc(
        "compile", "build.py:build", "--calib", "build.py:calib", "--pipeline", PIPELINE,
        "-o", "swin.onnx", cwd=home,
    )  # fmt: skip
    return home, proc


def test_swin_does_not_trace_and_the_error_names_the_capture(tmp_path):
    (tmp_path / "build.py").write_text(BUILD)
    proc = run_bevcc("compile", "build.py:build", "-o", "out.onnx", cwd=tmp_path)
    assert proc.returncode == 1 and not (tmp_path / "out.onnx").exists()
    assert "(AdaptivePadding) failed" in proc.stderr
    assert "start the pipeline with onnx(...)" in proc.stderr


def test_swin_captured_as_onnx_is_int8_and_lint_clean(swin):
    home, proc = swin
    assert proc.returncode == 0, proc.stderr
    # 2 + 2 blocks of qkv, proj and two FFN linears (16), Q.K^T and attn.V (8), patch
    # embedding and the patch merging's reduction: 26 layers
    assert "quantized 26 layers (Conv 1, MatMul 25)" in proc.stderr
    lint = run_bevcc("lint", "swin.onnx", "--json", cwd=home)
    report = json.loads(lint.stdout)
    assert lint.returncode == 0 and report["errors"] == 0


def test_swin_file_computes_the_pytorch_swin(swin):
    home, _ = swin
    import importlib.util

    spec = importlib.util.spec_from_file_location("swin_build", home / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    model, _ = build.build()
    image = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(7))
    session = ort.InferenceSession(str(home / "swin.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    got = session.run(None, {"x": image.numpy()})
    with torch.no_grad():
        want = [t.numpy() for t in model(image)]
    for g, w in zip(got, want, strict=True):
        sqnr = 10 * np.log10((w**2).sum() / ((g - w) ** 2).sum())
        assert sqnr > 20, sqnr  # INT8 (max calibration, 4 batches) of seeded weights
