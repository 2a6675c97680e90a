"""The manager's checks: verify after each pass, the `modified` claim, failures named in place."""

import io

import numpy as np
import onnx_graphsurgeon as gs
import pytest

from bevcc import Pass, PassResult
from bevcc.errors import PassError, UsageError
from bevcc.ir.fx import FxIR
from bevcc.ir.onnx import OnnxIR
from bevcc.pm.manager import PassManager


def fx_pass(name, body):
    return type(
        name,
        (Pass,),
        {"name": name, "summary": "test", "ir": "fx", "call": lambda self, ir: body(ir)},
    )


def onnx_pass(name, body):
    return type(
        name,
        (Pass,),
        {"name": name, "summary": "test", "ir": "onnx", "call": lambda self, ir: body(ir)},
    )


def _scale_first_weight(ir):
    next(iter(ir.module.parameters())).data.mul_(2.0)
    return PassResult(ir, modified=False)


def _touch_nothing_but_claim(ir):
    return PassResult(ir, modified=True)


def _break_fx_order(ir):
    # Move the output node to the front: every later node is used before it is defined.
    nodes = list(ir.graph.nodes)
    nodes[1].prepend(nodes[-1])
    return PassResult(ir, modified=True)


def _dangling_onnx_input(ir):
    ghost = gs.Variable("ghost", dtype=np.float32, shape=[1])
    ir.graph.nodes.append(
        gs.Node(
            "Relu", inputs=[ghost], outputs=[gs.Variable("ghost_out", dtype=np.float32, shape=[1])]
        )
    )
    ir.graph.outputs.append(ir.graph.nodes[-1].outputs[0])
    return PassResult(ir, modified=True)


def _raise(ir):
    raise KeyError("conv.weight")


@pytest.fixture
def fx_ir(tiny, registry):
    model, inputs = tiny
    return FxIR.trace(model, inputs, registry.trace_rules())


def _manager(registry, passes, text, kind, **kwargs):
    for p in passes:
        registry.add_pass(p)
    return PassManager(text, registry, kind, stream=io.StringIO(), **kwargs)


def test_a_pass_that_hides_a_change_is_named(registry, fx_ir):
    pm = _manager(registry, [fx_pass("liar", _scale_first_weight)], "fx(dce,liar)", "fx")
    with pytest.raises(PassError) as info:
        pm.run(fx_ir)
    assert str(info.value) == (
        "pass 'liar' reported modified=False but the IR changed (after "
        "[dce]); its PassResult must say whether it changed the IR"
    )


def test_a_pass_that_claims_a_change_it_did_not_make_is_named(registry, fx_ir):
    pm = _manager(registry, [fx_pass("boaster", _touch_nothing_but_claim)], "fx(boaster)", "fx")
    with pytest.raises(
        PassError,
        match=r"pass 'boaster' reported modified=True but the IR did "
        r"not change \(after \[\]\)",
    ):
        pm.run(fx_ir)


def test_a_pass_that_breaks_the_fx_graph_is_named(registry, fx_ir):
    pm = _manager(registry, [fx_pass("breaker", _break_fx_order)], "fx(dce,breaker)", "fx")
    with pytest.raises(
        PassError,
        match=r"^pass 'breaker' broke the IR \(after \[dce\]\): fx graph "
        r"of TinyCNN is invalid",
    ):
        pm.run(fx_ir)


def test_a_pass_that_breaks_the_onnx_graph_is_named(registry, tiny_onnx):
    pm = _manager(
        registry,
        [onnx_pass("breaker", _dangling_onnx_input)],
        "onnx(cleanup,check,breaker)",
        "onnx",
    )
    with pytest.raises(
        PassError,
        match=r"^pass 'breaker' broke the IR \(after \[cleanup, check\]\)"
        r": onnx graph is invalid: .*ghost",
    ):
        pm.run(OnnxIR.load(tiny_onnx))


def test_without_verification_the_broken_graph_goes_through(registry, tiny_onnx):
    pm = _manager(
        registry,
        [onnx_pass("breaker", _dangling_onnx_input)],
        "onnx(breaker)",
        "onnx",
        verify_each=False,
        check_modified=False,
    )
    assert pm.run(OnnxIR.load(tiny_onnx)).records[0].modified


def test_an_exception_inside_a_pass_is_wrapped_with_its_place(registry, fx_ir):
    pm = _manager(registry, [fx_pass("crasher", _raise)], "fx(dce,crasher)", "fx")
    with pytest.raises(PassError) as info:
        pm.run(fx_ir)
    assert str(info.value) == "pass 'crasher' failed after [dce]: KeyError: 'conv.weight'"
    assert isinstance(info.value.__cause__, KeyError)


def test_a_pass_must_return_a_pass_result(registry, fx_ir):
    pm = _manager(registry, [fx_pass("sloppy", lambda ir: ir)], "fx(sloppy)", "fx")
    with pytest.raises(
        PassError, match="pass 'sloppy' failed after \\[\\]: it returned FxIR, not a PassResult"
    ):
        pm.run(fx_ir)


def test_pipeline_is_validated_before_anything_runs(registry):
    with pytest.raises(UsageError, match="unknown fx pass 'dcee': did you mean dce"):
        PassManager("fx(dce),fx(dcee)", registry, "fx")
    with pytest.raises(
        UsageError, match=r"'onnx\(check\)' runs on onnx, but the pipeline holds fx"
    ):
        PassManager("onnx(check)", registry, "fx")
    with pytest.raises(UsageError, match="unknown IR 'tvm'"):
        PassManager("tvm(x)", registry, "fx")
    with pytest.raises(UsageError, match="--print-ir-after names bn_fold, not in the pipeline"):
        PassManager("fx(dce)", registry, "fx", print_ir_after="bn_fold")


def test_ir_flow_through_a_conversion(registry):
    pm = PassManager("fx(dce),export{opset=13},onnx(cleanup,check)", registry, "fx")
    assert [s.label for s in pm.steps] == [
        "fx(dce)",
        "export{opset=13}",
        "onnx(cleanup)",
        "onnx(check)",
    ]
    assert pm.output_kind == "onnx"


@pytest.mark.parametrize(
    "what, printed",
    [
        ("all", ["fx(dce)", "export", "onnx(check)"]),
        ("change", ["export"]),
        ("check", ["onnx(check)"]),
        ("dce,check", ["fx(dce)", "onnx(check)"]),
    ],
)
def test_print_ir_after(registry, fx_ir, what, printed):
    stream = io.StringIO()
    PassManager(
        "fx(dce),export,onnx(check)", registry, "fx", print_ir_after=what, stream=stream
    ).run(fx_ir)
    headers = [line for line in stream.getvalue().splitlines() if line.startswith("// -----")]
    assert [h.split("IR after ")[1].split(" (")[0] for h in headers] == printed


def test_timing_table_lists_every_step(registry, fx_ir):
    stream = io.StringIO()
    PassManager("fx(dce),export,onnx(check)", registry, "fx", timing=True, stream=stream).run(fx_ir)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "===- bevcc pass timing -==="
    assert [
        line.split()[-1] if "unchanged" not in line else line.split()[-2] for line in lines[2:]
    ] == ["fx(dce)", "export", "onnx(check)", "total"]


def test_no_verify_skips_the_modified_check_too(registry, tiny):
    import bevcc

    registry.add_pass(fx_pass("liar", _scale_first_weight))
    with pytest.raises(PassError, match="reported modified=False"):
        bevcc.compile(tiny, pipeline="fx(liar)", registry=registry)
    result = bevcc.compile(tiny, pipeline="fx(liar)", registry=registry, verify_each=False)
    assert result.records[0].modified is False


def test_onnx_fingerprint_sees_changes_the_dump_leaves_out(tiny_onnx):
    ir = OnnxIR.load(tiny_onnx)
    first = ir.fingerprint()
    ir.graph.nodes[0].name = "renamed"
    second = ir.fingerprint()
    ir.graph.nodes[0].outputs[0].dtype = np.float32  # value_info for an intermediate tensor
    assert len({first, second, ir.fingerprint()}) == 3
