"""onnx bn_fold on files made by another tool (torch.onnx.export, opset 9 and 17): no
BatchNormalization left, onnxruntime parity with the unfolded file, skip rules, golden."""

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import bevcc
from bevcc.ir.onnx import OnnxIR
from bevcc.reference.seeding import randomize_batchnorm


def export(model, example, opset):
    """Export keeping BatchNormalization nodes (no constant folding), as other tools ship them."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            example,
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
            do_constant_folding=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options).run(None, {"x": x})[0]


def fold_file(tmp_path, model: onnx.ModelProto, registry):
    path = tmp_path / "in.onnx"
    onnx.save(model, path)
    before = path.read_bytes()
    result = bevcc.compile(
        str(path), pipeline="onnx(bn_fold,check)", registry=registry, output=tmp_path / "out.onnx"
    )
    assert path.read_bytes() == before  # the input file is never modified
    return result, onnx.load(tmp_path / "out.onnx")


def count(model: onnx.ModelProto, op: str) -> int:
    return sum(node.op_type == op for node in model.graph.node)


@pytest.mark.parametrize("opset", [9, 17])
def test_reference_model_from_torch_export_folds_completely(tmp_path, registry, tiny, opset):
    model, (x,) = tiny
    original = export(model, (x,), opset)
    assert count(original, "BatchNormalization") == 6
    result, folded = fold_file(tmp_path, original, registry)
    assert result.records[0].stats == {
        "folded": {"Conv+BatchNormalization": 5, "ConvTranspose+BatchNormalization": 1},
        "skipped": [],
    }
    assert count(folded, "BatchNormalization") == 0
    np.testing.assert_allclose(
        run(folded, x.numpy()), run(original, x.numpy()), rtol=1e-4, atol=1e-5
    )


class GemmAndDeconv(nn.Module):
    def __init__(self):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, output_padding=1)
        self.bn2d = nn.BatchNorm2d(6)
        self.linear = nn.Linear(6, 5)  # with a bias torch exports Gemm (without, MatMul)
        self.bn1d = nn.BatchNorm1d(5)

    def forward(self, x):
        pooled = self.bn2d(self.deconv(x)).mean(dim=(2, 3))
        return self.bn1d(self.linear(pooled))


def test_grouped_deconv_and_gemm_fold_exactly(tmp_path, golden, registry):
    torch.manual_seed(0)
    model = GemmAndDeconv()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    x = torch.randn(3, 4, 5, 5)
    original = export(model, (x,), 17)
    assert count(original, "Gemm") == 1
    result, folded = fold_file(tmp_path, original, registry)
    assert result.records[0].stats["folded"] == {
        "ConvTranspose+BatchNormalization": 1,
        "Gemm+BatchNormalization": 1,
    }
    np.testing.assert_allclose(
        run(folded, x.numpy()), run(original, x.numpy()), rtol=1e-4, atol=1e-5
    )
    golden("bn_fold_gemm_deconv.onnx", result.ir)


class SharedOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y  # the raw conv output is observable: folding would change it


def test_conv_output_used_elsewhere_is_skipped_and_reported(tmp_path, registry):
    original = export(SharedOutput(), (torch.randn(1, 3, 4, 4),), 17)
    result, folded = fold_file(tmp_path, original, registry)
    (skip,) = result.records[0].stats["skipped"]
    assert skip["reason"] == "the unfolded output of /conv/Conv is also used elsewhere"
    assert result.records[0].modified is False
    assert count(folded, "BatchNormalization") == 1


def test_folded_graph_has_nothing_left_to_fold(registry, tiny):
    model, example = tiny
    result = bevcc.compile(
        OnnxIR.from_model(export(model, example, 17)),
        pipeline="onnx(bn_fold,bn_fold)",
        registry=registry,
    )
    assert [r.modified for r in result.records] == [True, False]


def test_fp64_graph_folds_to_1e_10(registry):
    from onnx.reference import ReferenceEvaluator  # onnxruntime has no float64 Conv on CPU

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, groups=1), nn.BatchNorm2d(5)).double()
    randomize_batchnorm(model, torch.Generator().manual_seed(2))
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    original = export(model, (x,), 17)
    result = bevcc.compile(OnnxIR.from_model(original), pipeline="onnx(bn_fold)", registry=registry)
    (got,) = ReferenceEvaluator(result.ir.to_model()).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(got, model.eval()(x).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_only_the_folded_nodes_go_and_unrelated_dead_code_stays(registry):
    import onnx_graphsurgeon as gs

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))  # fresh BN: torch dedups its
    original = export(model, (torch.randn(1, 3, 4, 4),), 17)  # params behind Identity nodes
    assert [n.op_type for n in original.graph.node] == [
        "Identity",
        "Identity",
        "Conv",
        "BatchNormalization",
    ]
    ir = OnnxIR.from_model(original)
    dead = gs.Variable("dead", dtype=np.float32)
    ir.graph.nodes.append(gs.Node("Neg", inputs=[ir.graph.inputs[0]], outputs=[dead]))
    result = bevcc.compile(ir, pipeline="onnx(bn_fold)", registry=registry)
    assert [n.op for n in result.ir.graph.nodes] == ["Conv", "Neg"]
    assert [
        n.op
        for n in bevcc.compile(
            result.ir, pipeline="onnx(cleanup)", registry=registry
        ).ir.graph.nodes
    ] == ["Conv"]
