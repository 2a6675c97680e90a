"""mmdet's SwinTransformer exported raw (torch.onnx, TorchScript path), as a user holds it: 6014
nodes, most of them shape arithmetic that onnx's shape inference cannot follow, so calibration
sized nothing behind it and read each tensor in a run of its own (68 runs over the data). The
default ONNX pipeline simplifies it to 402 nodes with the same outputs; qdq_insert on the raw
file says to simplify first; a Q/DQ file made from the raw export keeps every pair.

Small config (embed_dims 32, depths 2/2/2/2, heads 1/2/4/8, window 7) at 224x224, seeded.
The node counts are torch 2.13's TorchScript exporter at its default opset (20) on mmdet 3.3.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from bevcc_mmdet3d import ext_standin

from bevcc.testing import run_bevcc

RAW_NODES, SIMPLE_NODES = 6014, 402
SHAPE_OPS = {"Shape", "ConstantOfShape", "Range", "Equal", "Where", "Expand"}
QDQ = ("QuantizeLinear", "DequantizeLinear")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """(the raw export's path, a 1x3x224x224 .npz of two samples)."""
    ext_standin.install()
    from mmdet.models.backbones import SwinTransformer

    torch.manual_seed(0)
    swin = SwinTransformer(
        embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=7
    )
    swin.eval()  # mmdet's train() returns None: not chained
    home = tmp_path_factory.mktemp("swin")
    path = home / "swin_raw.onnx"
    with torch.no_grad():
        torch.onnx.export(
            swin, (torch.randn(1, 3, 224, 224),), str(path), dynamo=False, input_names=["img"]
        )
    rng = np.random.default_rng(0)
    np.savez(home / "calib.npz", img=rng.standard_normal((2, 3, 224, 224)).astype(np.float32))
    return path, home / "calib.npz"


def _run(path, image) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"img": image})


def _unsized_matmul_inputs(path) -> int:
    """MatMul/Conv inputs that onnx's shape inference (as the calibration planner runs it, no
    data propagation) leaves without a static shape."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    static = {
        info.name
        for info in [*model.graph.input, *model.graph.value_info]
        if info.type.tensor_type.HasField("shape")
        and all(d.HasField("dim_value") for d in info.type.tensor_type.shape.dim)
    } | {t.name for t in model.graph.initializer}
    layers = [n for n in model.graph.node if n.op_type in ("MatMul", "Conv")]
    return sum(name not in static for n in layers for name in n.input[:2])


def test_the_default_pipeline_simplifies_the_raw_export_with_the_same_outputs(raw, tmp_path):
    path, _ = raw
    out = tmp_path / "swin.onnx"
    proc = run_bevcc("compile", path, "-o", out)  # default-onnx: no pipeline asked for
    assert proc.returncode == 0, proc.stderr
    assert f"onnx(simplify): {RAW_NODES} -> {SIMPLE_NODES} nodes" in proc.stderr
    simple = onnx.load(str(out))
    assert len(onnx.load(str(path)).graph.node) == RAW_NODES
    assert len(simple.graph.node) == SIMPLE_NODES
    assert {n.op_type for n in simple.graph.node} & SHAPE_OPS == set()
    image = np.random.default_rng(5).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for before, after in zip(_run(path, image), _run(out, image), strict=True):
        scale = float(np.max(np.abs(before)))
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-6 * scale)
    # why calibration was slow: 67 layer inputs had no size (a calibration run each); now
    # every one has
    assert _unsized_matmul_inputs(path) == 67
    assert _unsized_matmul_inputs(out) == 0


@pytest.fixture(scope="module")
def raw_quantized(raw):
    """onnx(qdq_insert) on the raw export, one batch: (the finished process, the Q/DQ file)."""
    path, calib = raw
    out = path.parent / "raw.int8.onnx"
    proc = run_bevcc(
        "compile", path, "--pipeline", "onnx(qdq_insert{max_batches=1})", "--calib", calib,
        "-o", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc, out


def test_qdq_insert_on_the_raw_export_says_to_simplify_first(raw, raw_quantized, tmp_path):
    path, calib = raw
    warning = "run onnx(simplify) first"
    lines = [line for line in raw_quantized[0].stderr.splitlines() if warning in line]
    assert len(lines) == 1, raw_quantized[0].stderr
    assert lines[0].startswith("bevcc: warning: qdq_insert: ")
    proc = run_bevcc(
        "compile", path, "--pipeline", "onnx(simplify,qdq_insert{max_batches=1})",
        "--calib", calib, "-o", tmp_path / "simple.int8.onnx",
    )  # fmt: skip
    assert proc.returncode == 0 and warning not in proc.stderr, proc.stderr


def test_a_qdq_file_of_the_raw_export_keeps_every_pair(raw_quantized, tmp_path):
    quantized, simple = raw_quantized[1], tmp_path / "simple.int8.onnx"
    proc = run_bevcc("compile", quantized, "--pipeline", "onnx(simplify,check)", "-o", simple)
    assert proc.returncode == 0, proc.stderr

    def counts(file):
        model = onnx.load(str(file))
        weights = {t.name for t in model.graph.initializer}
        nodes = model.graph.node
        return {
            **{op: sum(n.op_type == op for n in nodes) for op in QDQ},
            "weight Q": sum(n.op_type == QDQ[0] and n.input[0] in weights for n in nodes),
        }

    # 52 layers: the patch-embedding Conv, 35 Linear MatMuls (a weight and an activation each)
    # and 16 attention MatMuls (q @ k^T, attn @ v: two activations each) = 36 weight and 68
    # activation quantizers
    assert counts(quantized) == counts(simple) == {QDQ[0]: 104, QDQ[1]: 104, "weight Q": 36}
    assert len(onnx.load(str(simple)).graph.node) < len(onnx.load(str(quantized)).graph.node) / 10
    image = np.random.default_rng(6).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for before, after in zip(_run(quantized, image), _run(simple, image), strict=True):
        scale = float(np.max(np.abs(before)))
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-6 * scale)
