"""FX IR adapter: tracing with leaf modules, trace errors, canonical dump, fingerprint, save/load."""

import pytest
import torch
from torch import nn

from bevcc.errors import InputError
from bevcc.ir.fx import CAPTURE_ONNX_HINT, FxIR


class Gate(nn.Module):
    """Data-dependent control flow: not traceable unless it is a leaf."""

    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


class Body(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.conv(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = Body()

    def forward(self, x):
        return torch.relu(self.body(x))


def test_dump_of_the_reference_model(golden, tiny, registry):
    model, inputs = tiny
    golden("tiny_cnn.fx", FxIR.trace(model, inputs, registry.trace_rules()))


def test_dump_has_shapes_and_no_addresses(tiny):
    text = FxIR.trace(*tiny).dump()
    assert "0x" not in text
    assert "%x = placeholder  : f32[1,3,32,32]" in text
    assert "output %head" in text


def test_untraceable_module_error_names_the_module_and_the_leaf_hook():
    with pytest.raises(InputError) as info:
        FxIR.trace(Net())
    message = str(info.value)
    assert message.startswith("cannot trace Net: module 'body.gate' (Gate) failed: ")
    assert message.endswith(
        "make Gate a leaf module (bevcc.register_leaf_module(Gate) or the "
        "bevcc_register_leaf_modules hook) or make its forward traceable; " + CAPTURE_ONNX_HINT
    )
    assert "\n" not in message


def test_a_declared_leaf_module_is_traced_as_one_call(registry):
    registry.add_leaf_module(Gate)
    ir = FxIR.trace(Net(), (torch.ones(1, 3, 4, 4),), registry.trace_rules())
    calls = [(n.op, n.target) for n in ir.graph.nodes if n.op == "call_module"]
    assert calls == [("call_module", "body.conv"), ("call_module", "body.gate")]


def test_tracing_never_touches_the_callers_module(tiny):
    model, inputs = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ir = FxIR.trace(model, inputs)
    for p in ir.module.parameters():
        p.data.zero_()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fingerprint_follows_weights_and_structure(tiny):
    ir = FxIR.trace(*tiny)
    first = ir.fingerprint()
    assert ir.fingerprint() == first
    ir.module.head.bias.data[0] += 1e-6
    second = ir.fingerprint()
    assert second != first
    relu = next(n for n in ir.graph.nodes if n.target is torch.relu)
    relu.replace_all_uses_with(relu.args[0])
    ir.graph.erase_node(relu)
    assert ir.fingerprint() != second


def test_save_and_load_round_trip(tmp_path, tiny):
    ir = FxIR.trace(*tiny)
    ir.save(tmp_path / "model.pt")
    loaded = FxIR.load(tmp_path / "model.pt")
    assert loaded.dump() == ir.dump()
    x = tiny[1][0]
    assert torch.equal(loaded.module(x), ir.module(x))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_loading_something_else_is_one_clear_error(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="is not a bevcc fx file"):
        FxIR.load(bad)
