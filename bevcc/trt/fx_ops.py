"""The FX side of TensorRT's rules: which ONNX op each FX target exports to, so FX passes ask the
same rows as ONNX passes and lint (bevcc.trt.rules). A target is an nn.Module type (subclasses
match, as isinstance does), a function, or a method name. Adding an FX spelling of an op is one
entry here; tests/test_trt_rules.py checks every entry names an existing row.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from bevcc.trt.rules import RULES, OpRule

__all__ = [
    "FUNCTIONS",
    "METHODS",
    "MODULES",
    "FxOp",
    "fx_inputs",
    "fx_op",
    "reads_sparse_features",
    "rule_for_fx",
]


@dataclass(frozen=True)
class FxOp:
    onnx: str  # the op it exports to: its row in RULES
    # where the ONNX op's inputs sit among the call's args: "first" (args[0]), "list" (the items
    # of args[0], as torch.cat takes them), "pair" (args[0], args[1]), "second" (args[1] of a
    # two-argument call)
    args: str = "first"


MODULES: dict[type, FxOp] = {
    nn.MaxPool1d: FxOp("MaxPool"),
    nn.MaxPool2d: FxOp("MaxPool"),
    nn.MaxPool3d: FxOp("MaxPool"),
    nn.Flatten: FxOp("Flatten"),
    nn.Unflatten: FxOp("Reshape"),
    nn.Identity: FxOp("Identity"),
    nn.Upsample: FxOp("Resize"),  # its `mode` attribute decides the row's condition
    nn.modules.conv._ConvNd: FxOp("Conv"),  # every ConvNd, and bevcc's quantized subclasses
    nn.modules.conv._ConvTransposeNd: FxOp("ConvTranspose"),  # before _ConvNd in their MRO
    nn.Linear: FxOp("Gemm"),
}

FUNCTIONS: dict[object, FxOp] = {
    torch.flatten: FxOp("Flatten"),
    torch.reshape: FxOp("Reshape"),
    torch.transpose: FxOp("Transpose"),
    torch.permute: FxOp("Transpose"),
    torch.squeeze: FxOp("Squeeze"),
    torch.unsqueeze: FxOp("Unsqueeze"),
    F.max_pool1d: FxOp("MaxPool"),
    F.max_pool2d: FxOp("MaxPool"),
    F.max_pool3d: FxOp("MaxPool"),
    # x[...] exports as Slice; getitem of a tuple (a split, a module's outputs) picks a value
    # unchanged
    operator.getitem: FxOp("Slice"),
    F.interpolate: FxOp("Resize"),  # its `mode` keyword decides the row's condition
    torch.cat: FxOp("Concat", "list"),
    torch.concat: FxOp("Concat", "list"),
    operator.add: FxOp("Add", "pair"),
    torch.add: FxOp("Add", "pair"),
    operator.iadd: FxOp("Add", "pair"),
    F.conv1d: FxOp("Conv"),
    F.conv2d: FxOp("Conv"),
    F.conv3d: FxOp("Conv"),
    F.linear: FxOp("Gemm"),
}

METHODS: dict[str, FxOp] = {
    "view": FxOp("Reshape"),
    "reshape": FxOp("Reshape"),
    "flatten": FxOp("Flatten"),
    "permute": FxOp("Transpose"),
    "transpose": FxOp("Transpose"),
    "squeeze": FxOp("Squeeze"),
    "unsqueeze": FxOp("Unsqueeze"),
    "contiguous": FxOp("Identity"),
    "add": FxOp("Add", "pair"),
}

# ---- FX only: spconv 2.x sparse tensors (exported to libspconv, not to TensorRT's ONNX) -------
# A SparseConvTensor and its `.features` hold the same values, and s.replace_feature(f) carries
# f's values on: both are identities for scale domains.
SPCONV_ATTRIBUTES: dict[str, FxOp] = {"features": FxOp("Identity")}  # getattr(s, "features")
SPCONV_METHODS: dict[str, FxOp] = {"replace_feature": FxOp("Identity", "second")}


def reads_sparse_features(node: fx.Node) -> bool:
    """getattr(s, "features") of a sparse tensor: an Add of two of these is libspconv's residual
    Add, which sparse_conv_quant quantizes (and keeps fp16 or not) itself."""
    return node.op == "call_function" and node.target is getattr and node.args[1:] == ("features",)


# ------------------------------------------------------------------------------------------------


def fx_op(node: fx.Node, modules: dict) -> FxOp | None:
    """The ONNX op this FX node exports to (None: one no rule covers)."""
    if node.op == "call_module":
        module = modules.get(node.target)
        return (
            next((MODULES[t] for t in type(module).__mro__ if t in MODULES), None)
            if module is not None
            else None
        )
    if node.op == "call_method":
        return METHODS.get(node.target) or SPCONV_METHODS.get(node.target)
    if node.op == "call_function":
        if node.target is getattr and len(node.args) == 2:
            return SPCONV_ATTRIBUTES.get(node.args[1])
        return FUNCTIONS.get(node.target)
    return None


def rule_for_fx(node: fx.Node, modules: dict) -> OpRule | None:
    """The ONNX row TensorRT applies to what this FX node exports to (None: no rule, or the row's
    condition fails: the module attribute or call keyword it names)."""
    op = fx_op(node, modules)
    if op is None:
        return None
    rule = RULES[op.onnx]
    if rule.when is None:
        return rule
    if node.op == "call_module":
        value = getattr(modules[node.target], rule.when.name, None)
    else:
        value = node.kwargs.get(rule.when.name)
    return rule if rule.when.holds(value) else None


def fx_inputs(node: fx.Node, modules: dict) -> list[fx.Node] | None:
    """The node's tensor inputs in the ONNX op's input order (None: not a covered op, or its
    arguments are not graph values where the op's inputs should be)."""
    op = fx_op(node, modules)
    args = node.args
    if op is None or not args:
        return None
    if op.args == "list":
        if not isinstance(args[0], (list, tuple)):
            return None
        return [a for a in args[0] if isinstance(a, fx.Node)] or None
    if op.args == "pair":
        pair = list(args[:2])
        return pair if len(pair) == 2 and all(isinstance(a, fx.Node) for a in pair) else None
    if op.args == "second":
        return [args[1]] if len(args) == 2 and isinstance(args[1], fx.Node) else None
    return [args[0]] if isinstance(args[0], fx.Node) else None
