"""onnx(simplify) folds what a file's fixed input shapes decide and never changes what it computes:
on the onnx package's zoo architectures (files nobody here wrote, seeded weights) onnxruntime
gives the same outputs before and after, no node reading only constants is left, and a Q/DQ file
keeps every Q/DQ pair. A dynamic dimension stays dynamic. mmdet's raw Swin export, the case that
made this pass, is in plugins/bevcc-mmdet3d/tests/test_mmdet3d_swin_simplify.py."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import bevcc
from tests.conftest import run_bevcc
from tests.zoo_models import light_models, seeded_model

LARGE = {"light_bvlc_alexnet", "light_zfnet512", "light_vgg19"}  # 240-550 MB: BEVCC_ZOO=all
ZOO = [n for n in light_models() if n not in LARGE or os.environ.get("BEVCC_ZOO") == "all"]
# Nodes left after simplify, measured: densenet121 and inception_v2 Unsqueeze each
# BatchNormalization parameter (a constant) into the shape their Mul/Add needs; the others hold a
# Reshape whose target shape the opset upgrade turns into a Constant node.
NODES_AFTER = {
    "light_densenet121": 668,
    "light_inception_v2": 371,
    "light_resnet50": 176,
    "light_shufflenet": 203,
    "light_squeezenet": 68,
    "light_inception_v1": 143,
    "light_bvlc_alexnet": 24,
    "light_zfnet512": 22,
    "light_vgg19": 46,
}
QDQ = ("QuantizeLinear", "DequantizeLinear")


def _session(model: onnx.ModelProto):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # IR-3 files list initializers as inputs: a warning per file
    return ort.InferenceSession(model.SerializeToString(), options)


def _outputs(model: onnx.ModelProto, feed: dict) -> dict[str, np.ndarray]:
    session = _session(model)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed), strict=True))


def _assert_same(reference: dict, result: dict) -> None:
    assert reference.keys() == result.keys()
    for name, value in reference.items():
        scale = float(np.max(np.abs(value))) or 1.0
        # onnxruntime computes the folded constants with the kernels that ran them: ~1 ulp
        np.testing.assert_allclose(result[name], value, rtol=0, atol=1e-6 * scale, err_msg=name)


def _constant_only(model: onnx.ModelProto) -> list[str]:
    """Nodes (other than Constant and Q/DQ) all of whose inputs are initializers or Constants."""
    constants = {t.name for t in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [
        n.name
        for n in model.graph.node
        if n.op_type not in ("Constant", *QDQ)
        and n.input
        and all(i in constants for i in n.input if i)
    ]


def _image(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, 224, 224)).astype(np.float32)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_file_keeps_its_outputs_and_loses_its_constant_computations(tmp_path, name):
    model = seeded_model(name)
    path, out = tmp_path / f"{name}.onnx", tmp_path / "simple.onnx"
    onnx.save(model, path)
    proc = run_bevcc("compile", path, "--pipeline", "onnx(simplify,check)", "-o", out)
    assert proc.returncode == 0, proc.stderr
    simple = onnx.load(str(out))
    assert len(simple.graph.node) == NODES_AFTER[name]
    assert _constant_only(simple) == []
    feed = {simple.graph.input[0].name: _image()}
    _assert_same(_outputs(model, feed), _outputs(simple, feed))


def test_a_qdq_file_keeps_every_pair_and_its_outputs(tmp_path, registry):
    """squeezenet through onnx(qdq_insert), then simplify: each weight's Q reads its initializer
    (constant inputs, which a fold would turn into an int8 weight) and stays."""
    model = seeded_model("light_squeezenet")
    calib = [{"data_0": _image(seed)} for seed in (1, 2)]
    quantized = bevcc.compile(
        model, pipeline="onnx(qdq_insert)", calib=calib, registry=registry
    ).ir.to_model()
    simple = bevcc.compile(quantized, pipeline="onnx(simplify)", registry=registry)
    after = simple.ir.to_model()

    def counts(m):
        initializers = {t.name for t in m.graph.initializer}
        nodes = m.graph.node
        return {
            **{op: sum(n.op_type == op for n in nodes) for op in QDQ},
            "weight Q": sum(n.op_type == QDQ[0] and n.input[0] in initializers for n in nodes),
        }

    assert counts(quantized)["weight Q"] == 26  # squeezenet's 26 convs
    assert counts(after) == counts(quantized)
    assert simple.records[0].stats["nodes_after"] == len(quantized.graph.node) - 2  # Constants
    feed = {"data_0": _image()}
    _assert_same(_outputs(quantized, feed), _outputs(after, feed))


class _Flatten(torch.nn.Module):
    """Shape arithmetic on the batch (kept) and on the channels (fixed by the file: folded)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y.reshape(y.shape[0], y.shape[1] * y.shape[2], -1).softmax(-1)


def test_a_dynamic_batch_stays_dynamic(tmp_path, registry):
    path = tmp_path / "dynamic.onnx"
    torch.onnx.export(
        _Flatten().eval(), (torch.randn(2, 3, 8, 8),), str(path), dynamo=False,
        input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )  # fmt: skip
    raw = onnx.load(str(path))
    result = bevcc.compile(str(path), pipeline="onnx(simplify,check)", registry=registry)
    simple = result.ir.to_model()
    ops = [n.op_type for n in simple.graph.node]
    assert result.records[0].modified and len(ops) < len(raw.graph.node)
    assert ops.count("Shape") == 1  # the batch's; the channels' 4 x 8 is now a constant
    dims = simple.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "n"
    for batch in (1, 3):
        feed = {"x": np.random.default_rng(batch).standard_normal((batch, 3, 8, 8), np.float32)}
        _assert_same(_outputs(raw, feed), _outputs(simple, feed))


def test_random_ops_and_other_domains_are_never_evaluated(registry):
    """A RandomUniform (no inputs: all of them constant) and a node of a plugin's domain fed
    only constants stay; the constant Add beside them is folded."""
    shape = numpy_helper.from_array(np.array([2, 2], np.int64), "shape")
    one = numpy_helper.from_array(np.ones((2, 2), np.float32), "one")
    graph = helper.make_graph(
        [
            helper.make_node("RandomUniform", [], ["noise"], name="noise", shape=[2, 2]),
            helper.make_node("Add", ["one", "one"], ["two"], name="two"),
            helper.make_node("Scale", ["two"], ["custom"], name="plugin", domain="trt.plugins"),
            helper.make_node("Add", ["x", "noise"], ["a"], name="a"),
            helper.make_node("Add", ["a", "custom"], ["y"], name="y"),
            helper.make_node("Reshape", ["y", "shape"], ["z"], name="z"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 2])],
        [shape, one],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("trt.plugins", 1)],
    )
    result = bevcc.compile(model, pipeline="onnx(simplify)", registry=registry)
    names = [n.name for n in result.ir.graph.nodes]
    assert names == ["noise", "plugin", "a", "y", "z"]
    assert result.records[0].stats["folded"] == 1


def test_a_file_with_nothing_to_fold_is_unchanged(registry, tmp_path):
    model = seeded_model("light_resnet50")
    result = bevcc.compile(model, pipeline="onnx(simplify)", registry=registry)
    assert not result.records[0].modified  # the manager checked this claim on the fingerprint
    assert result.records[0].report == [
        "176 -> 176 nodes, 0 tensors folded to constants in 1 round(s)"
    ]
