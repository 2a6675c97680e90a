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


CENTER_HEAD = textwrap.dedent(
    """
    import torch
    from bevcc_mmdet3d import mm

    HEAD = dict(
        type="CenterHead", in_channels=512,
        tasks=[dict(num_class=1, class_names=["car"]),
               dict(num_class=2, class_names=["truck", "construction_vehicle"])],
        common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)),
        share_conv_channel=64,
        bbox_coder=dict(type="CenterPointBBoxCoder", pc_range=[-51.2, -51.2],
                        post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0], max_num=500,
                        score_threshold=0.1, out_size_factor=8, voxel_size=[0.1, 0.1],
                        code_size=9),
        separate_head=dict(type="SeparateHead", init_bias=-2.19, final_kernel=3),
        norm_bbox=True)

    def build():
        torch.manual_seed(0)
        model = mm.build(HEAD)
        model.eval()
        return model, ([torch.randn(1, 512, 32, 32)],)

    def calib():
        g = torch.Generator().manual_seed(1)
        return [{"feats_0": torch.randn(1, 512, 32, 32, generator=g).numpy()} for _ in range(3)]
    """
)


def test_center_head_traced_and_captured_share_the_same_scale_domains(tmp_path):
    """mmdet3d's CenterHead traces in FX and also captures as ONNX: both routes find the same
    25 layers and the same 14 scale domains (sharing comes from the graph either way), and
    the two files compute the same thing."""
    (tmp_path / "build.py").write_text(CENTER_HEAD)
    routes = {
        "fx.onnx": "fx(bn_fold,qdq_insert,quantizer_unify),export,onnx(check)",
        "captured.onnx": "onnx(simplify,bn_fold,qdq_insert,quantizer_unify,check)",
    }
    for out, pipeline in routes.items():
        proc = run_bevcc(
            "compile", "build.py:build", "--calib", "build.py:calib", "--pipeline", pipeline,
            "-o", out, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "quantized 25 layers" in proc.stderr
        assert "25 activation quantizers -> 14" in proc.stderr or "14 scale domains" in proc.stderr
    x = np.random.RandomState(5).randn(1, 512, 32, 32).astype(np.float32)
    fx, captured = (
        ort.InferenceSession(str(tmp_path / out), providers=["CPUExecutionProvider"]).run(
            None, {"feats_0": x}
        )
        for out in routes
    )
    for a, b in zip(fx, captured, strict=True):
        sqnr = 10 * np.log10((a**2).sum() / max(((a - b) ** 2).sum(), 1e-30))
        assert sqnr > 30, sqnr
