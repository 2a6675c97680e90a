"""TensorRT's Q/DQ rules (bevcc.trt.rules) row by row, through the ONNX quantizer_unify pass and
`bevcc lint`, on tiny hand-made graphs; test_trt_rules_fx.py takes every FX entry through the FX
pass. Tests are parametrized over the table: a new row is tested without a new test (a layer row
needs one example line below)."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from bevcc.ir.onnx import OnnxIR
from bevcc.lint.checks import lint_model
from bevcc.passes.quantizer_unify.onnx import QuantizerUnifyOnnx
from bevcc.quant.config import OP_TYPES
from bevcc.quant.encoding_check import check_encoding
from bevcc.trt.rules import ALL, RULES, rule_for
from bevcc.trt.weights import LAYOUTS

MOVERS = [op for op, r in RULES.items() if r.commutes and r.shares_scale is not ALL]
ALL_INPUTS = [op for op, r in RULES.items() if r.shares_scale is ALL]
JOINS = [op for op, r in RULES.items() if r.join]
LAYERS = [op for op, r in RULES.items() if r.layer]
CONDITIONAL = [op for op, r in RULES.items() if r.when is not None]
OTHER_VALUE = {"mode": "linear"}  # per condition attribute: a value the condition rejects
# per layer row: activation shape, weight shape, output shape, its exact multiply-accumulates,
# and the weight axis TensorRT takes per-channel scales on (docs/tensorrt_qdq.md)
LAYER_EXAMPLES = {
    "Conv": ([1, 2, 4, 4], [3, 2, 1, 1], [1, 3, 4, 4], 48 * 2, 0),
    "ConvTranspose": ([1, 2, 4, 4], [2, 3, 1, 1], [1, 3, 4, 4], 32 * 3, 0),  # [Cin, Cout, ...]
    "Gemm": ([1, 2], [2, 3], [1, 3], 3 * 2, 1),
    "MatMul": ([1, 2], [2, 3], [1, 3], 6, 1),
}
# per row with `transposed_by`: the attribute set, the weight's shape then and its scale axis
TRANSPOSED_EXAMPLES = {"Gemm": ({"transB": 1}, [3, 2], 0)}
BIASED = [op for op in LAYERS if RULES[op].bias is not None]
OPERANDS = [op for op in LAYERS if LAYOUTS[RULES[op].layout].operand]
# every layer row, plainly and with its weight transposed: (op, attributes, weight shape, axis)
LAYER_CASES = [(op, {}, *LAYER_EXAMPLES[op][1:2], LAYER_EXAMPLES[op][4]) for op in LAYERS] + [
    (op, attrs, shape, axis) for op, (attrs, shape, axis) in TRANSPOSED_EXAMPLES.items()
]
LAYER_IDS = [op + "".join(f"-{k}" for k in attrs) for op, attrs, _, _ in LAYER_CASES]


class Net:
    """A hand-made ONNX graph: only what the rules look at (op types, attributes, inputs)."""

    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name, value):
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def qdq(self, source, scale):
        s, z = self.const(f"{source}_s", np.float32(scale)), self.const(f"{source}_z", np.int8(0))
        self.node("QuantizeLinear", [source, s, z], f"{source}_q")
        return self.node("DequantizeLinear", [f"{source}_q", s, z], f"{source}_dq")

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def model(self, inputs, outputs):
        def info(shapes):
            return [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in shapes]

        graph = helper.make_graph(self.nodes, "g", info(inputs), info(outputs), self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def unify(model, **options):
    result = QuantizerUnifyOnnx(QuantizerUnifyOnnx.Options(**options))(OnnxIR.from_model(model))
    return result, result.ir.to_model()


def activation_scales(model):
    """{scale initializer name: value} read by Q/DQ of activations (graph inputs' tensors)."""
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {
        n.input[1]: float(constants[n.input[1]])
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear")
        and n.input[0] != "w"
        and n.input[0] != "w_q"
    }


def mover(op, condition_holds=True):
    """x -> Q/DQ(0.125) -> op -> y, read by a Conv and by Q/DQ(0.25)."""
    rule, net = RULES[op], Net()
    x = net.qdq("x", 0.125)
    inputs = [
        x if i in rule.shares_scale else net.const(f"c{i}", np.int64(1))
        for i in range(max(rule.shares_scale) + 1)
    ]
    attrs = (
        {}
        if rule.when is None
        else {
            rule.when.name: rule.when.allowed[0] if condition_holds else OTHER_VALUE[rule.when.name]
        }
    )
    y = net.node(op, inputs, "y", **attrs)
    net.const("w", np.ones((3, 2, 1, 1), np.float32))
    net.node("Conv", ["y", net.qdq("w", 0.5)], "conv")
    net.qdq(y, 0.25)
    # x of unknown shape: shape inference leaves y's shape open whatever `op` makes of it (a
    # Conv reading a tensor of the wrong rank aborts onnx's shape inference)
    return net.model([("x", None)], [("conv", [1, 3, 4, 4]), ("y_dq", None)])


@pytest.mark.parametrize("op", MOVERS)
def test_onnx_row_moving_qdq_makes_one_scale_domain(op):
    before = lint_model(mover(op))
    # the Conv behind the op reads x's DQ through it: INT8
    assert (before.int8_macs, before.total_macs, before.float_layers) == (96, 96, [])
    assert [(m.kind, m.scales) for m in before.mismatches] == [("tensor", [0.125, 0.25])]
    result, after = unify(mover(op))
    assert result.stats == {
        "domains": 1,
        "rescaled": 2,
        "merged": 0,
        "inserted": {"add": 0, "concat": 0},
        "unscaled": [],
    }
    assert list(activation_scales(after).values()) == [0.25]  # one initializer: the widest
    assert (lint_model(after).reformats, lint_model(after).problems) == (0, [])


@pytest.mark.parametrize("op", CONDITIONAL)
def test_onnx_row_whose_condition_fails_moves_nothing(op):
    report = lint_model(mover(op, condition_holds=False))
    assert (report.mismatches, report.int8_macs, report.float_layers) == ([], 0, ["conv"])
    result, _ = unify(mover(op, condition_holds=False))
    assert (result.modified, result.stats["domains"]) == (False, 2)


@pytest.mark.parametrize("op", ALL_INPUTS)
def test_onnx_row_sharing_all_inputs_gets_a_qdq_on_each(op):
    net = Net()
    net.node(op, [net.qdq("a", 0.125), "b"], "c", axis=1)
    net.qdq("c", 0.25)
    model = net.model([("a", [1, 2]), ("b", [1, 2])], [("c_dq", [1, 4])])
    assert [(m.kind, m.where, m.scales) for m in lint_model(model).mismatches] == [
        ("concat", "c", [0.125, 0.25])
    ]
    result, after = unify(model)
    assert result.stats["inserted"] == {"add": 0, "concat": 1}
    assert list(activation_scales(after).values()) == [0.25]
    report = lint_model(after)
    assert (report.qdq_pairs, report.reformats, report.problems) == (3, 0, [])


def layer(op, net, activation):
    """activation -> op (weight: ones through a Q/DQ, at the row's weight input) -> "layer"."""
    w_shape = LAYER_EXAMPLES[op][1]
    net.const("w", np.ones(w_shape, np.float32))
    inputs = [activation] + [""] * RULES[op].weight
    inputs[RULES[op].weight] = net.qdq("w", 0.5)
    return net.node(op, inputs, "layer")


@pytest.mark.parametrize("op", LAYERS)
@pytest.mark.parametrize("quantized", [True, False])
def test_onnx_layer_row_counts_int8_macs_and_fuses_the_residual_add(op, quantized):
    net, (x_shape, _, out_shape, macs, _) = Net(), LAYER_EXAMPLES[op]
    layer(op, net, net.qdq("x", 0.125) if quantized else "x")
    net.node("Add", ["layer", "r"], "sum")
    net.qdq("r", 0.25)  # the identity's own domain gives its scale
    # the layer's output is quantized for another reader, so it has a scale a Q/DQ on the Add's
    # input could take: only the rule keeps it off
    net.qdq("layer", 0.25)
    model = net.model(
        [("x", x_shape), ("r", out_shape)],
        [("sum", out_shape), ("r_dq", out_shape), ("layer_dq", out_shape)],
    )
    report = lint_model(model)
    assert (report.int8_macs, report.total_macs, report.float_layers) == (
        (macs, macs, []) if quantized else (0, macs, ["layer"])
    )
    result, after = unify(model)
    # residual policy: the layer's output stays float (TensorRT fuses the Add into the layer),
    # the identity input gets a Q/DQ at its domain's scale
    assert result.stats["inserted"] == {"add": 1, "concat": 0}
    add = next(n for n in after.graph.node if n.op_type == "Add")
    producers = {o: n for n in after.graph.node for o in n.output}
    assert [producers[i].op_type for i in add.input] == [op, "DequantizeLinear"]
    assert lint_model(after).reformats == 0


@pytest.mark.parametrize("op", JOINS)
def test_onnx_join_row_follows_the_add_policy(op):
    net = Net()
    net.node(op, [net.qdq("a", 0.125), net.qdq("b", 0.25)], "sum")
    net.const("w", np.ones((2, 3), np.float32))
    net.node("MatMul", ["sum", net.qdq("w", 0.5)], "layer")
    model = net.model([("a", [1, 2]), ("b", [1, 2])], [("layer", [1, 3])])
    report = lint_model(model)
    assert [(m.kind, m.scales) for m in report.mismatches] == [("add", [0.125, 0.25])]
    assert report.float_layers == ["layer"]  # a sum's output is no DQ: no Q/DQ moves through
    # no layer input to fuse into: an INT8 Add, whose inputs share one scale under either policy
    for policy in ("residual", "shared"):
        result, after = unify(model, add=policy)
        assert list(activation_scales(after).values()) == [0.25]
        assert lint_model(after).reformats == 0
    net = Net()  # two float activations and no layer to fuse into: both get a Q/DQ
    net.node(op, ["a", "b"], "sum")
    net.qdq("a", 0.125)
    net.qdq("b", 0.25)
    model = net.model(
        [("a", [1, 2]), ("b", [1, 2])], [("sum", [1, 2]), ("a_dq", [1, 2]), ("b_dq", [1, 2])]
    )
    result, after = unify(model)
    assert result.stats["inserted"] == {"add": 2, "concat": 0}
    # both at the joined domain's scale, as the FX pass does
    assert list(activation_scales(after).values()) == [0.25]
    assert lint_model(after).mismatches == []
    net = Net()  # a constant operand is a bias, no join
    net.node(op, [net.qdq("a", 0.125), net.const("bias", np.ones(2, np.float32))], "sum")
    result, _ = unify(net.model([("a", [1, 2])], [("sum", [1, 2])]))
    assert (result.modified, result.stats["inserted"]) == (False, {"add": 0, "concat": 0})


def test_the_table_holds_what_the_spec_names():
    """The ops docs/tensorrt_qdq.md names keep their rules."""

    def rule(op, **attrs):
        return rule_for(helper.make_node(op, [], [], **attrs))

    assert all(rule(op).shares_scale == (0,) for op in ("MaxPool", "Reshape", "Transpose", "Slice"))
    assert rule("Concat").shares_scale is ALL and rule("Add").join
    assert rule("Resize") is rule("Resize", mode="nearest") is RULES["Resize"]
    assert rule("Resize", mode="linear") is None and rule("Upsample", mode="linear") is None
    assert all(rule(op).weight == 1 for op in ("Conv", "ConvTranspose", "Gemm", "MatMul"))
    assert rule("Relu") is None  # not in the table: Q/DQ stop there


def float_layer(op, attrs, w_shape, bias=False, activation_weight=False):
    """x -> op (a constant weight, or a second graph input `w`; a bias if asked) -> "layer"."""
    rule, net = RULES[op], Net()
    x_shape, _, out_shape, _, _ = LAYER_EXAMPLES[op]
    weight = "w" if activation_weight else net.const("w", np.ones(w_shape, np.float32) / 4)
    inputs = ["x"] + [""] * max(rule.weight, rule.bias if bias else 0)
    inputs[rule.weight] = weight
    if bias:
        inputs[rule.bias] = net.const("b", np.full(out_shape[1], 0.5, np.float32))
    net.node(op, inputs, "layer", **attrs)
    graph_inputs = [("x", x_shape)] + ([("w", w_shape)] if activation_weight else [])
    return net.model(graph_inputs, [("layer", out_shape)])


def qdq_insert(model, **context):
    from bevcc.data import CalibData
    from bevcc.passes.qdq_insert.onnx import QdqInsertOnnx
    from bevcc.pm.pass_base import PassContext

    shapes = {
        i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    batches = [{k: np.ones(v, np.float32) for k, v in shapes.items()}]
    ir = OnnxIR.from_model(model)
    context = PassContext(calib=CalibData(batches), **context)
    return QdqInsertOnnx(QdqInsertOnnx.Options(), context)(ir)


def dq_axes(model):
    """{tensor a DQ reads: its per-channel axis, or None per tensor}"""
    q_input = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    return {
        q_input[n.input[0]]: next((a.i for a in n.attribute if a.name == "axis"), None)
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
    }


@pytest.mark.parametrize(("op", "attrs", "w_shape", "axis"), LAYER_CASES, ids=LAYER_IDS)
def test_onnx_layer_row_says_the_weight_axis_the_encoding_check_expects(op, attrs, w_shape, axis):
    def model(weight_axis):
        net = Net()
        net.const("w", np.ones(w_shape, np.float32))
        scale = net.const("w_s", np.full(w_shape[weight_axis], 0.5, np.float32))
        zero = net.const("w_z", np.zeros(w_shape[weight_axis], np.int8))
        net.node("QuantizeLinear", ["w", scale, zero], "w_q", axis=weight_axis)
        net.node("DequantizeLinear", ["w_q", scale, zero], "w_dq", axis=weight_axis)
        inputs = ["x"] + [""] * RULES[op].weight
        inputs[RULES[op].weight] = "w_dq"
        net.node(op, inputs, "layer", **attrs)
        return net.model([("x", None)], [("layer", None)])

    assert check_encoding(model(axis)) == []
    other = 1 - axis
    assert [str(p) for p in check_encoding(model(other))] == [
        f"w_dq: per-channel axis {other} on the weight of {op} layer; expected {axis}"
    ]


@pytest.mark.parametrize("op", BIASED)
def test_onnx_layer_row_with_a_bias_input_gets_no_qdq_there(op):
    net, rule = Net(), RULES[op]
    net.const("w", np.ones(LAYER_EXAMPLES[op][1], np.float32))
    net.const("b", np.ones(3, np.float32))
    inputs = ["x"] + [""] * max(rule.weight, rule.bias)
    inputs[rule.weight], inputs[rule.bias] = "w", net.qdq("b", 0.5)
    net.node(op, inputs, "layer")
    model = net.model([("x", None)], [("layer", None)])
    assert [str(p) for p in check_encoding(model)] == ["b_dq: Q/DQ on the bias of layer"]


@pytest.mark.parametrize(("op", "attrs", "w_shape", "axis"), LAYER_CASES, ids=LAYER_IDS)
def test_onnx_qdq_insert_quantizes_each_layer_row_on_its_weight_axis(op, attrs, w_shape, axis):
    kind = LAYOUTS[RULES[op].layout].kind
    result = qdq_insert(float_layer(op, attrs, w_shape, bias=RULES[op].bias is not None))
    after = result.ir.to_model()
    assert dq_axes(after) == {"x": None, "w": axis}
    assert check_encoding(after) == []
    assert (result.stats["quantized"], result.stats["kept_float"]) == ({op: 1}, [])
    # the quant config names the layer by its layout's op type
    config = {"ops": {kind: {"per_channel": False}}}
    per_tensor = qdq_insert(float_layer(op, attrs, w_shape), quant_config=config)
    assert dq_axes(per_tensor.ir.to_model()) == {"x": None, "w": None}


@pytest.mark.parametrize("op", OPERANDS)
def test_onnx_qdq_insert_quantizes_both_operands_of_an_activation_matmul(op):
    w_shape = LAYER_EXAMPLES[op][1]
    result = qdq_insert(float_layer(op, {}, w_shape, activation_weight=True))
    assert dq_axes(result.ir.to_model()) == {"x": None, "w": None}
    assert result.stats["quantized"] == {op: 1}


@pytest.mark.parametrize(
    ("op", "attrs", "w_shape"),
    [(op, attrs, shape) for op, attrs, shape, _ in LAYER_CASES if op in BIASED],
    ids=[i for i, case in zip(LAYER_IDS, LAYER_CASES, strict=True) if case[0] in BIASED],
)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_onnx_bn_fold_folds_into_each_layer_row_with_a_bias_input(op, attrs, w_shape, bias):
    import onnxruntime as ort

    from bevcc.passes.bn_fold.onnx import BatchNormFoldOnnx

    model = float_layer(op, attrs, w_shape, bias=bias)
    net = Net()  # BatchNormalization over the layer's 3 output channels
    params = [np.array([2.0, 0.5, 1.0]), np.array([0.1, -0.2, 0.3]), np.array([1.0, 2.0, 3.0])]
    names = [net.const(f"bn_{n}", p.astype(np.float32)) for n, p in zip("gbm", params, strict=True)]
    names.append(net.const("bn_v", np.array([4.0, 1.0, 0.25], np.float32)))
    net.node("BatchNormalization", ["layer", *names], "y")
    model.graph.node.extend(net.nodes)
    model.graph.initializer.extend(net.inits)
    model.graph.output[0].name = "y"
    x = np.random.default_rng(0).standard_normal(LAYER_EXAMPLES[op][0]).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]

    result = BatchNormFoldOnnx()(OnnxIR.from_model(model))
    assert result.stats == {"folded": {f"{op}+BatchNormalization": 1}, "skipped": []}
    after = result.ir.to_model()
    assert [n.op_type for n in after.graph.node] == [op]
    np.testing.assert_allclose(run(after), run(model), rtol=1e-5, atol=1e-6)


def test_every_row_is_tested_above():
    assert set(RULES) == set(MOVERS) | set(ALL_INPUTS) | set(JOINS) | set(LAYERS)
    assert set(LAYER_EXAMPLES) == set(LAYERS)
    assert all(RULES[op].when.name in OTHER_VALUE for op in CONDITIONAL)
    assert all(RULES[op].layout in LAYOUTS for op in LAYERS)
    assert set(TRANSPOSED_EXAMPLES) == {op for op in LAYERS if RULES[op].transposed_by}
    assert {layout.kind for layout in LAYOUTS.values()} | {"matmul"} <= set(OP_TYPES)
