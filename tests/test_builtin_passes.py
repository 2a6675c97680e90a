"""The built-in passes on both IRs: exact results, honest `modified`, golden graphs."""

import numpy as np
import onnx_graphsurgeon as gs
import torch
from torch import nn

import bevcc
from bevcc.ir.onnx import OnnxIR


class DeadBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Conv2d(3, 4, 1)
        self.unused = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        self.unused(x)  # result dropped: dead code, and its module with it
        y = self.used(x)
        torch.sigmoid(y)  # dead as well
        return y


def test_dce_removes_dead_calls_and_their_modules(golden, registry):
    example = (torch.randn(1, 3, 4, 4),)
    result = bevcc.compile((DeadBranch(), example), pipeline="fx(dce)", registry=registry)
    assert result.records[0].modified
    assert result.records[0].stats == {"removed_nodes": 2}
    assert not hasattr(result.ir.module, "unused")
    golden("dce_dead_branch", result.ir)


def test_dce_on_a_clean_graph_reports_unmodified(registry, tiny):
    result = bevcc.compile(tiny, pipeline="fx(dce)", registry=registry)
    assert result.records[0].modified is False
    assert result.records[0].stats == {"removed_nodes": 0}


def test_cleanup_removes_what_no_output_needs(registry, tiny_onnx):
    ir = OnnxIR.load(tiny_onnx)
    x = ir.graph.inputs[0]
    dangling = gs.Variable("dangling", dtype=np.float32)
    ir.graph.nodes.append(gs.Node("Relu", inputs=[x], outputs=[dangling]))
    extra_input = gs.Variable("unused_input", dtype=np.float32, shape=[1])
    ir.graph.inputs.append(extra_input)
    nodes = len(ir.graph.nodes)
    result = bevcc.compile(
        ir, pipeline="onnx(cleanup,cleanup{remove_unused_inputs=true},cleanup)", registry=registry
    )
    assert [r.modified for r in result.records] == [True, True, False]
    assert [r.stats for r in result.records] == [
        {"removed_nodes": 1, "removed_inputs": 0},
        {"removed_nodes": 0, "removed_inputs": 1},
        {"removed_nodes": 0, "removed_inputs": 0},
    ]
    assert len(result.ir.graph.nodes) == nodes - 1
    assert [t.name for t in result.ir.graph.inputs] == ["x"]


def test_check_never_modifies(registry, tiny_onnx):
    result = bevcc.compile(str(tiny_onnx), pipeline="onnx(check)", registry=registry)
    assert result.records[0].modified is False


def test_export_opset_and_dynamic_batch(registry, tiny):
    result = bevcc.compile(
        tiny, pipeline="fx(dce),export{opset=13,dynamic_batch=true}", registry=registry
    )
    model = result.ir.to_model()
    assert model.opset_import[0].version == 13
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_compile_never_modifies_the_callers_module(registry, tiny):
    model, _ = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bevcc.compile((DeadBranch(), (torch.randn(1, 3, 4, 4),)), pipeline="fx(dce)", registry=registry)
    bevcc.compile(tiny, pipeline="fx(dce),export", registry=registry)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.kept = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())  # called whole: children stay
        self.parts = nn.ModuleDict({"a": nn.Conv2d(3, 3, 1), "b": nn.Conv2d(3, 3, 1)})
        self.gone = nn.Sequential(nn.Conv2d(3, 3, 1))

    def forward(self, x):
        self.gone(x)
        self.parts["b"](x)
        return self.kept(self.parts["a"](x)) + x


def test_dce_keeps_used_and_nested_modules_and_drops_the_rest(registry):
    from bevcc.ir.fx import FxIR

    ir = FxIR.trace(Nested(), (torch.randn(1, 3, 2, 2),), rules=(nn.Sequential,))
    result = bevcc.compile(ir, pipeline="fx(dce)", registry=registry)
    names = sorted(n for n, _ in result.ir.module.named_modules() if n)
    assert names == ["kept", "kept.0", "kept.1", "parts", "parts.a"]
