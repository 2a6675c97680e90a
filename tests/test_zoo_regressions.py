"""Bugs the light model zoo (tests/test_onnx_zoo.py) exposed, each pinned on a hand-made graph of
a few nodes: quantizer_unify's modified claim, Sum as a residual join, bias Adds, Dropout."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import bevcc
from bevcc.lint.checks import lint_model

SHAPE = [1, 4, 6, 6]


def _conv(name: str, x: str, y: str, rng, cin: int = 4) -> tuple[onnx.NodeProto, onnx.TensorProto]:
    weight = numpy_helper.from_array(
        rng.standard_normal((4, cin, 3, 3)).astype(np.float32) * 0.3, f"{name}_w"
    )
    return helper.make_node("Conv", [x, weight.name], [y], name, pads=[1, 1, 1, 1]), weight


def _model(
    body: list[tuple], extra_nodes: list, initializers: list | None = None, opset: int = 13
) -> onnx.ModelProto:
    """x -> the given (conv name, input, output[, input channels]) convs and extra nodes -> y."""
    rng = np.random.default_rng(0)
    nodes, weights = [], list(initializers or [])
    for conv in body:
        node, weight = _conv(*conv[:3], rng, *conv[3:])
        nodes.append(node)
        weights.append(weight)
    graph = helper.make_graph(
        nodes + extra_nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def _calib() -> list[dict]:
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(2)]


def _quantized(tmp_path, model: onnx.ModelProto, registry, passes: str):
    path = tmp_path / "float.onnx"
    onnx.save(model, path)
    return bevcc.compile(
        str(path),
        pipeline=f"onnx({passes})",
        calib=_calib(),
        output=tmp_path / "q.onnx",
        registry=registry,
    )


def test_unify_with_nothing_to_share_reports_unmodified_and_changes_nothing(tmp_path, registry):
    """Every domain here has one Q/DQ pair. quantizer_unify used to point each pair at a new
    `<root>_shared_scale` initializer anyway while reporting modified=False, which the pass
    manager's check rejects ("reported modified=False but the IR changed"): six of the nine zoo
    files (alexnet, densenet121, resnet50, shufflenet, vgg19, zfnet512), every one where unify
    had nothing to rescale, insert or merge."""
    model = _model(
        [("conv1", "x", "a"), ("conv2", "r", "y")], [helper.make_node("Relu", ["a"], ["r"], "relu")]
    )
    plain = _quantized(tmp_path, model, registry, "qdq_insert").output
    before = onnx.load(plain)
    result = bevcc.compile(
        str(plain), pipeline="onnx(quantizer_unify)", registry=registry, output=tmp_path / "u.onnx"
    )
    assert result.records[0].modified is False
    assert result.records[0].stats["rescaled"] == 0
    after = onnx.load(tmp_path / "u.onnx")
    assert sorted(t.name for t in after.graph.initializer) == sorted(
        t.name for t in before.graph.initializer
    )


def test_two_equal_scales_on_separate_initializers_become_one_and_say_modified(tmp_path, registry):
    """The other side of the claim: same values, two initializers -> one, modified=True."""
    model = _model(
        [("conv1", "x", "a"), ("conv2", "a", "b"), ("conv3", "a", "c")],
        [helper.make_node("Concat", ["b", "c"], ["y"], "concat", axis=1)],
    )
    plain = onnx.load(_quantized(tmp_path, model, registry, "qdq_insert").output)
    # a second pair on `a` for conv3, with a copy of the first pair's scale
    conv3 = next(n for n in plain.graph.node if n.name == "conv3")
    producers = {o: n for n in plain.graph.node for o in n.output}
    dq = producers[conv3.input[0]]
    scale = next(t for t in plain.graph.initializer if t.name == dq.input[1])
    plain.graph.initializer.append(
        numpy_helper.from_array(numpy_helper.to_array(scale), "copied_scale")
    )
    plain.graph.node.extend(
        [
            helper.make_node("QuantizeLinear", ["a", "copied_scale", dq.input[2]], ["a_q2"], "q2"),
            helper.make_node(
                "DequantizeLinear", ["a_q2", "copied_scale", dq.input[2]], ["a_dq2"], "dq2"
            ),
        ]
    )
    conv3.input[0] = "a_dq2"
    onnx.save(plain, tmp_path / "two.onnx")
    assert lint_model(plain).reformats == 0  # equal values: no Reformat, only two initializers
    result = bevcc.compile(
        str(tmp_path / "two.onnx"),
        pipeline="onnx(quantizer_unify)",
        output=tmp_path / "one.onnx",
        registry=registry,
    )
    assert result.records[0].modified is True
    assert (result.records[0].stats["rescaled"], result.records[0].stats["merged"]) == (0, 1)
    quantizers = sum(
        n.op_type == "QuantizeLinear" for n in onnx.load(tmp_path / "one.onnx").graph.node
    )
    assert quantizers == 5  # three weights, x's pair, and one pair left on `a`


def _sum_block(op: str, opset: int) -> onnx.ModelProto:
    """conv1 -> Relu (r), the identity; conv2(r) + r through `op`, then conv3."""
    return _model(
        [("conv1", "x", "a"), ("conv2", "r", "b"), ("conv3", "s", "y")],
        [
            helper.make_node("Relu", ["a"], ["r"], "relu"),
            helper.make_node(op, ["b", "r"], ["s"], "join"),
        ],
        opset=opset,
    )


@pytest.mark.parametrize("op", ["Add", "Sum"])
def test_two_input_sum_is_a_residual_join_like_add(tmp_path, registry, op):
    """Caffe2's opset-9 ResNet-50 and ShuffleNet write residual joins as Sum; TensorRT imports
    both as one elementwise sum. Sum's identity input used to stay unquantized."""
    result = _quantized(tmp_path, _sum_block(op, 9), registry, "qdq_insert,quantizer_unify")
    stats = result.records[1].stats
    # the identity r is already quantized for conv2: the inserted pair merges into that one
    assert (stats["inserted"]["add"], stats["merged"], stats["unscaled"]) == (1, 1, [])
    emitted = onnx.load(result.output)
    producers = {o: n for n in emitted.graph.node for o in n.output}
    join = next(n for n in emitted.graph.node if n.op_type == op)
    assert [producers[i].op_type for i in join.input] == ["Conv", "DequantizeLinear"]
    assert lint_model(emitted).reformats == 0


def test_lint_counts_a_sum_with_two_scales_as_a_reformat(tmp_path, registry):
    """`add=shared` quantizes both Sum inputs; give one another scale: lint must see it."""
    result = _quantized(
        tmp_path, _sum_block("Sum", 13), registry, "qdq_insert,quantizer_unify{add=shared}"
    )
    emitted = onnx.load(result.output)
    assert lint_model(emitted).reformats == 0
    producers = {o: n for n in emitted.graph.node for o in n.output}
    join = next(n for n in emitted.graph.node if n.op_type == "Sum")
    dq = producers[join.input[0]]
    bumped = numpy_helper.from_array(np.asarray(2.0, np.float32), "bumped_scale")
    emitted.graph.initializer.append(bumped)
    dq.input[1] = producers[dq.input[0]].input[1] = "bumped_scale"
    report = lint_model(emitted)
    assert [(m.kind, m.where) for m in report.mismatches] == [("add", "join")]


def test_an_add_of_a_constant_is_a_bias_not_a_join(tmp_path, registry):
    """densenet121 and inception_v2 (Caffe2) follow BatchNormalization with Mul and Add of
    Unsqueeze'd per-channel constants. unify treated each such Add as a residual join and listed
    all 2 x 119 of their inputs as 'left float (no scale known)'; with add=shared it would try
    to give the constant an activation scale."""
    bias = numpy_helper.from_array(np.linspace(-1, 1, 4).astype(np.float32), "bias")
    axes = numpy_helper.from_array(np.asarray([1, 2], np.int64), "axes")
    model = _model(
        [("conv1", "x", "a"), ("conv2", "s", "y")],
        [
            helper.make_node("Unsqueeze", ["bias", "axes"], ["b"], "unsqueeze"),
            helper.make_node("Add", ["a", "b"], ["s"], "bias_add"),
        ],
        [bias, axes],
    )
    for policy in ("residual", "shared"):
        result = _quantized(
            tmp_path, model, registry, f"qdq_insert,quantizer_unify{{add={policy}}}"
        )
        stats = result.records[1].stats
        assert (stats["inserted"], stats["unscaled"]) == ({"add": 0, "concat": 0}, [])
        assert result.records[1].modified is False


def test_concat_reaching_a_conv_through_dropout_is_unified(tmp_path, registry):
    """SqueezeNet's last fire Concat reaches conv10 through Dropout, an identity in the
    inference graphs TensorRT builds: its inputs need the conv's scale too (lint would not see a
    mismatch there before, and unify left them unquantized)."""
    model = _model(
        [("conv1", "x", "a"), ("conv2", "x", "b"), ("conv3", "d", "y", 8)],
        [
            helper.make_node("Concat", ["a", "b"], ["c"], "concat", axis=1),
            helper.make_node("Dropout", ["c"], ["d"], "dropout"),
        ],
    )
    result = _quantized(tmp_path, model, registry, "qdq_insert,quantizer_unify")
    assert result.records[1].stats["inserted"] == {"add": 0, "concat": 2}
    emitted = onnx.load(result.output)
    producers = {o: n for n in emitted.graph.node for o in n.output}
    concat = next(n for n in emitted.graph.node if n.op_type == "Concat")
    conv3 = next(n for n in emitted.graph.node if n.name == "conv3")
    scales = {producers[i].input[1] for i in concat.input} | {producers[conv3.input[0]].input[1]}
    assert len(scales) == 1 and lint_model(emitted).reformats == 0
