"""FX graph facts quantizer_unify needs, asked of TensorRT's rules (bevcc.trt): which nodes pass
values on unchanged (TensorRT commutes Q/DQ through them), which are Adds and Concats, and which
produce compute-layer outputs."""

from __future__ import annotations

from torch import fx

from bevcc.quant.quantizer import TensorQuantizer
from bevcc.trt.fx_ops import fx_inputs, reads_sparse_features, rule_for_fx
from bevcc.trt.rules import ALL, shared_inputs


def module_of(node: fx.Node, modules: dict):
    return modules.get(node.target) if node.op == "call_module" else None


def is_activation_quantizer(node: fx.Node, modules: dict) -> bool:
    module = module_of(node, modules)
    return isinstance(module, TensorQuantizer) and module.axis is None


def moving_inputs(node: fx.Node, modules: dict) -> list[fx.Node] | None:
    """The inputs whose values a data-movement node passes on unchanged (None: not one)."""
    rule = rule_for_fx(node, modules)
    if rule is None or not rule.commutes:
        return None
    inputs = fx_inputs(node, modules)
    if not inputs:
        return None
    return shared_inputs(rule, inputs) or None


def concat_inputs(node: fx.Node, modules: dict) -> list[fx.Node] | None:
    """All inputs of an op that needs every input at the output's scale (Concat)."""
    rule = rule_for_fx(node, modules)
    return fx_inputs(node, modules) if rule is not None and rule.shares_scale is ALL else None


def add_inputs(node: fx.Node, modules: dict) -> tuple[fx.Node, fx.Node] | None:
    rule = rule_for_fx(node, modules)
    sides = fx_inputs(node, modules) if rule is not None and rule.join else None
    if sides is None or len(sides) != 2:  # an Add of a constant (a bias) is no join
        return None
    if all(reads_sparse_features(side) for side in sides):
        return None  # spconv residual Add: sparse_conv_quant owns it (and its fp16 choice)
    return sides[0], sides[1]


def from_conv(node: fx.Node, modules: dict) -> bool:
    """Produced straight by a conv/linear layer: TensorRT can fuse the Add into it."""
    rule = rule_for_fx(node, modules)
    return rule is not None and rule.layer
