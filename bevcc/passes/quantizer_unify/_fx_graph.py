"""FX graph facts quantizer_unify needs: which nodes move data without changing values (TensorRT
commutes Q/DQ through them), which are Adds and Concats, and which produce conv outputs."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from bevcc.quant.quantizer import TensorQuantizer

_MOVING_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.Flatten, nn.Identity,
                   nn.Unflatten)
_MOVING_FUNCTIONS = {torch.flatten, torch.reshape, torch.transpose, torch.permute,
                     torch.squeeze, torch.unsqueeze, F.max_pool1d, F.max_pool2d, F.max_pool3d,
                     operator.getitem}
_MOVING_METHODS = {"view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze",
                   "contiguous"}
_CAT = {torch.cat, torch.concat}
_ADD_FUNCTIONS = {operator.add, torch.add, operator.iadd}
_CONV_MODULES = (nn.modules.conv._ConvNd, nn.Linear)


def module_of(node: fx.Node, modules: dict):
    return modules.get(node.target) if node.op == "call_module" else None


def is_activation_quantizer(node: fx.Node, modules: dict) -> bool:
    module = module_of(node, modules)
    return isinstance(module, TensorQuantizer) and module.axis is None


def moving_inputs(node: fx.Node, modules: dict) -> list[fx.Node] | None:
    """The inputs whose values a data-movement node passes on unchanged (None: not one)."""
    module = module_of(node, modules)
    first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    if isinstance(module, _MOVING_MODULES) or (
            isinstance(module, nn.Upsample) and module.mode == "nearest"):
        return [first] if first is not None else None
    if node.op == "call_function" and node.target in _MOVING_FUNCTIONS:
        return [first] if first is not None else None
    if node.op == "call_function" and node.target is F.interpolate and \
            node.kwargs.get("mode", "nearest") == "nearest":
        return [first] if first is not None else None
    if node.op == "call_method" and node.target in _MOVING_METHODS:
        return [first] if first is not None else None
    # spconv: a sparse tensor and its features hold the same values; replace_feature(s, f)
    # carries f's values on.
    if node.op == "call_function" and node.target is getattr and node.args[1:] == ("features",):
        return [first] if first is not None else None
    if node.op == "call_method" and node.target == "replace_feature" and len(node.args) == 2 \
            and isinstance(node.args[1], fx.Node):
        return [node.args[1]]
    return concat_inputs(node)


def concat_inputs(node: fx.Node) -> list[fx.Node] | None:
    if node.op == "call_function" and node.target in _CAT and node.args and \
            isinstance(node.args[0], (list, tuple)):
        inputs = [a for a in node.args[0] if isinstance(a, fx.Node)]
        return inputs or None
    return None


def add_inputs(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or \
        (node.op == "call_method" and node.target == "add")
    if not (is_add and len(node.args) >= 2 and all(isinstance(a, fx.Node)
                                                   for a in node.args[:2])):
        return None
    if all(a.op == "call_function" and a.target is getattr and a.args[1:] == ("features",)
           for a in node.args[:2]):
        return None  # spconv residual Add: sparse_conv_quant owns it (and its fp16 choice)
    return node.args[0], node.args[1]


def from_conv(node: fx.Node, modules: dict) -> bool:
    """Produced straight by a conv/linear layer: TensorRT can fuse the Add into it."""
    return isinstance(module_of(node, modules), _CONV_MODULES) or (
        node.op == "call_function" and node.target in (F.conv1d, F.conv2d, F.conv3d, F.linear))
