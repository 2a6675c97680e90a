"""The FX side of TensorRT's Q/DQ rules (bevcc.trt.fx_ops): every FX entry through the FX
quantizer_unify pass on a tiny hand-made graph, and the entries' agreement with the ONNX table.
Parametrized over the entries: a new one is tested without a new test (a module entry needs an
instance below, a layer function its shapes)."""

import operator

import numpy as np
import pytest
import torch
from torch import fx, nn
from torch.nn import functional as F

from bevcc.data import CalibData
from bevcc.ir.fx import FxIR
from bevcc.passes.quantizer_unify.fx import QuantizerUnifyFx
from bevcc.pm.pass_base import PassContext
from bevcc.quant.quantizer import TensorQuantizer
from bevcc.trt import fx_ops
from bevcc.trt.rules import ALL, RULES
from tests.test_trt_rules import OTHER_VALUE

FX_ENTRIES = (
    [("module", k, v) for k, v in fx_ops.MODULES.items()]
    + [("function", k, v) for k, v in fx_ops.FUNCTIONS.items()]
    + [("method", k, v) for k, v in {**fx_ops.METHODS, **fx_ops.SPCONV_METHODS}.items()]
    + [("attribute", k, v) for k, v in fx_ops.SPCONV_ATTRIBUTES.items()]
)
# an instance per module entry (the key may be an abstract base) that runs on [1, 2, 4, 4]
FX_MODULES = {
    nn.MaxPool1d: lambda: nn.MaxPool1d(1),
    nn.MaxPool2d: lambda: nn.MaxPool2d(1),
    nn.MaxPool3d: lambda: nn.MaxPool3d(1),
    nn.Flatten: nn.Flatten,
    nn.Unflatten: lambda: nn.Unflatten(1, (2, 1)),
    nn.Identity: nn.Identity,
    nn.Upsample: lambda: nn.Upsample(scale_factor=2.0),
    nn.modules.conv._ConvNd: lambda: nn.Conv2d(2, 2, 1),
    nn.modules.conv._ConvTransposeNd: lambda: nn.ConvTranspose2d(2, 2, 1),
    nn.Linear: lambda: nn.Linear(4, 4),
}
FX_EXTRA_ARGS = {operator.getitem: (0,)}  # non-tensor arguments a call cannot do without
# layer functions: the shapes of their input and of their weight
FX_LAYER_FUNCTIONS = {
    F.conv1d: ([1, 2, 4], [2, 2, 1]),
    F.conv2d: ([1, 2, 4, 4], [2, 2, 1, 1]),
    F.conv3d: ([1, 2, 4, 4, 4], [2, 2, 1, 1, 1]),
    F.linear: ([1, 2, 4, 4], [4, 4]),
}


def entries(test):
    chosen = [e for e in FX_ENTRIES if test(RULES[e[2].onnx])]
    return pytest.mark.parametrize(
        "entry", chosen, ids=[f"{kind}:{getattr(key, '__name__', key)}" for kind, key, _ in chosen]
    )


def quantizer(amax=None):
    q = TensorQuantizer()
    if amax is not None:
        q.amax = torch.tensor(amax)
    return q


def fx_call(graph, root, entry, inputs, condition=True):
    """A call of the entry's target with `inputs` where its ONNX op's inputs are."""
    kind, key, op = entry
    rule = RULES[op.onnx]
    value = (
        None
        if rule.when is None
        else rule.when.allowed[0]
        if condition
        else OTHER_VALUE[rule.when.name]
    )
    if op.args == "list":
        args = (list(inputs),)
    elif op.args == "second":  # s.replace_feature(f)
        args = (graph.placeholder("sparse"), inputs[0])
    else:
        args = tuple(inputs[: 2 if op.args == "pair" else 1]) + FX_EXTRA_ARGS.get(key, ())
    if kind == "module":
        root.add_module("op", FX_MODULES[key]())
        if value is not None:
            setattr(root.op, rule.when.name, value)
        return graph.call_module("op", args)
    kwargs = {} if value is None else {rule.when.name: value}
    if kind == "attribute":
        return graph.call_function(getattr, (inputs[0], key))
    return (graph.call_method if kind == "method" else graph.call_function)(key, args, kwargs)


def fx_unify(root, graph, calib=None, **options):
    ir = FxIR(fx.GraphModule(root, graph))
    context = PassContext(calib=CalibData(calib) if calib is not None else None)
    return QuantizerUnifyFx(QuantizerUnifyFx.Options(**options), context)(ir), ir


def targets(ir):
    return [
        n.target
        for n in ir.graph.nodes
        if n.op == "call_module" and isinstance(ir.module.get_submodule(n.target), TensorQuantizer)
    ]


def amax(ir, target):
    return ir.module.get_submodule(target).amax.item()


def moving_graph(entry, condition=True):
    """q_in(x) -> entry -> q_out: two quantizers, one domain if the entry moves Q/DQ."""
    root, graph = nn.Module(), fx.Graph()
    root.q_in, root.q_out = quantizer(1.0), quantizer(2.0)
    moved = fx_call(
        graph, root, entry, [graph.call_module("q_in", (graph.placeholder("x"),))], condition
    )
    graph.output(graph.call_module("q_out", (moved,)))
    return fx_unify(root, graph)


@entries(lambda rule: rule.commutes and rule.shares_scale is not ALL)
def test_fx_entry_moving_qdq_shares_one_quantizer(entry):
    result, ir = moving_graph(entry)
    assert (targets(ir), result.stats["quantizers_after"]) == (["q_in", "q_in"], 1)


@entries(lambda rule: rule.when is not None)
def test_fx_entry_whose_condition_fails_moves_nothing(entry):
    result, ir = moving_graph(entry, condition=False)
    assert (result.modified, targets(ir)) == (False, ["q_in", "q_out"])


@entries(lambda rule: rule.shares_scale is ALL)
def test_fx_entry_sharing_all_inputs_quantizes_each_with_one_scale(entry):
    root, graph = nn.Module(), fx.Graph()
    root.q_a, root.q_out = quantizer(), quantizer()
    x, y = graph.placeholder("x"), graph.placeholder("y")
    joined = fx_call(graph, root, entry, [graph.call_module("q_a", (x,)), y])
    graph.output(graph.call_module("q_out", (joined,)))
    calib = [{"x": np.full((1, 2), -0.5, np.float32), "y": np.full((1, 2), 1.25, np.float32)}]
    result, ir = fx_unify(root, graph, calib)
    assert result.stats["inserted"] == {"add": 0, "concat": 1}
    assert len(targets(ir)) == 3 and len(set(targets(ir))) == 1
    assert amax(ir, "q_a") == 1.25  # recalibrated over every value of the domain


def add_graph(entry, producer):
    """q_x(x) -> producer -> p; entry(p, y), the identity y an activation of its own."""
    root, graph = nn.Module(), fx.Graph()
    root.q_x = quantizer(1.0)
    x, y = graph.placeholder("x"), graph.placeholder("y")
    p = producer(graph, root, graph.call_module("q_x", (x,)))
    graph.output(fx_call(graph, root, entry, [p, y]))
    return root, graph


def add_node(ir):
    return next(n for n in ir.graph.nodes if n.op == "output").args[0]


@entries(lambda rule: rule.join)
def test_fx_entry_joining_follows_the_add_policy(entry):
    calib = [{"x": np.full((1, 2), -2.0, np.float32), "y": np.full((1, 2), 1.5, np.float32)}]

    def relu(g, _, x):
        return g.call_function(torch.relu, (x,))

    def linear(g, root, x):  # weights of ones: linear(x) = (-4, -4)
        root.fc = nn.Linear(2, 2)
        nn.init.ones_(root.fc.weight), nn.init.zeros_(root.fc.bias)
        return g.call_module("fc", (x,))

    def unify(producer, policy):
        """(Q/DQ inserted, each Add input's quantizer or None where it stays float, its amax)"""
        result, ir = fx_unify(*add_graph(entry, producer), calib, add=policy)
        sides = [s.target if s.target in targets(ir) else None for s in add_node(ir).args]
        return result.stats["inserted"]["add"], sides, amax(ir, sides[1])

    # nothing to fuse the Add into: an INT8 Add, both inputs share one quantizer
    count, (a, b), widest = unify(relu, "residual")
    assert (count, a, widest) == (2, b, 1.5)  # the widest of relu(-2) = 0 and 1.5
    # residual: the layer's output stays float for TensorRT to fuse the Add into the layer
    count, (a, b), widest = unify(linear, "residual")
    assert (count, a, widest) == (1, None, 1.5)
    count, (a, b), widest = unify(linear, "shared")
    assert (count, a, widest) == (2, b, 4.0)


@entries(lambda rule: rule.layer)
def test_fx_entry_of_a_layer_keeps_its_output_float_for_fusion(entry):
    kind, key, _ = entry
    shape, w_shape = FX_LAYER_FUNCTIONS.get(key, ([1, 2, 4, 4], None))

    def layer(g, root, x):
        if kind == "module":
            return fx_call(g, root, entry, [x])
        root.register_buffer("w", torch.ones(w_shape))
        return g.call_function(key, (x, g.get_attr("w")))

    calib = [{"x": np.ones(shape, np.float32), "y": np.full(shape, 0.75, np.float32)}]
    add = ("function", operator.add, fx_ops.FUNCTIONS[operator.add])
    result, ir = fx_unify(*add_graph(add, layer), calib)
    assert result.stats["inserted"] == {"add": 1, "concat": 0}
    layer_out, identity = add_node(ir).args
    assert targets(ir) == ["q_x", identity.target]  # the layer's output stays float
    assert layer_out.target in ("op", key) and amax(ir, identity.target) == 0.75


def test_fx_spconv_residual_add_is_left_to_sparse_conv_quant():
    root, graph = nn.Module(), fx.Graph()
    root.q_a = quantizer(1.0)
    a, b = (graph.call_function(getattr, (graph.placeholder(n), "features")) for n in "ab")
    graph.output((graph.call_module("q_a", (a,)), graph.call_function(torch.add, (a, b))))
    result, _ = fx_unify(root, graph)
    assert (result.modified, result.stats["inserted"]) == (False, {"add": 0, "concat": 0})


def test_every_fx_entry_names_a_row_and_fits_its_kind():
    for _, key, op in FX_ENTRIES:
        rule = RULES[op.onnx]  # a KeyError names an FX entry without an ONNX row
        layout = "list" if rule.shares_scale is ALL else "pair" if rule.join else None
        assert op.args == layout if layout else op.args in ("first", "second"), key
    assert set(FX_MODULES) == set(fx_ops.MODULES)
    assert {k for k, v in fx_ops.FUNCTIONS.items() if RULES[v.onnx].layer} == set(
        FX_LAYER_FUNCTIONS
    )
