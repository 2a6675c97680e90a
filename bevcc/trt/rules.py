"""TensorRT's Q/DQ rules, stated once: one row per ONNX op type (docs/tensorrt_qdq.md).

A row says what TensorRT does with Q/DQ around the op: which data inputs end up in the output's
INT8 format (TensorRT moves DQ forward and Q backward through the op, so they must share one
scale), whether it is an elementwise sum (a residual join, quantized by the Add policy), and
whether it is a quantizable compute layer: which inputs are its weight and its bias, and how its
weight is laid out (bevcc.trt.weights: the per-channel scale axis, the output channels).
quantizer_unify on both IRs, `bevcc lint`, the encoding check, qdq_insert and bn_fold on ONNX
and sensitivity units read these rows; the FX side maps its targets onto them
(bevcc.trt.fx_ops). Adding an op is one row here; tests/test_trt_rules.py tests every row.
No torch here: `bevcc lint` runs without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import onnx

__all__ = [
    "ALL",
    "RULES",
    "Condition",
    "OpRule",
    "rule_for",
    "rule_for_attrs",
    "shared_inputs",
]

ALL = None  # shares_scale value: every input shares the output's scale (Concat)


@dataclass(frozen=True)
class Condition:
    """The row applies only while attribute `name` is one of `allowed` (absent: `default`)."""

    name: str
    allowed: tuple[str, ...]
    default: str

    def holds(self, value) -> bool:
        if isinstance(value, bytes):  # ONNX string attributes are bytes
            value = value.decode()
        return (self.default if value is None else value) in self.allowed


@dataclass(frozen=True)
class OpRule:
    # data inputs whose values the output carries unchanged: Q/DQ commute through the op and
    # these inputs share the output's scale. () = none (Q/DQ stop here); ALL = every input.
    shares_scale: tuple[int, ...] | None = ()
    join: bool = False  # elementwise sum of activations: the `add` policy places its Q/DQ
    weight: int | None = None  # quantizable compute layer: the input holding its weight
    bias: int | None = None  # a layer's bias input: never quantized; BatchNorm folds into it
    # a layer's weight layout, a key of bevcc.trt.weights.LAYOUTS; `transposed_by` names the
    # attribute that, when non-zero, stores a 2-D weight out_first instead (Gemm's transB)
    layout: str | None = None
    transposed_by: str | None = None
    # a layer's multiply-accumulates (bevcc.trt.macs): "per_output" (each output element sums
    # weight[1:] products), "per_input" (each input element scatters into weight[1:] outputs),
    # "matmul" (each output element sums over the inner dimension)
    macs: str | None = None
    when: Condition | None = None  # the row holds only under this condition

    @property
    def commutes(self) -> bool:
        return self.shares_scale != ()

    @property
    def layer(self) -> bool:
        return self.weight is not None


_NEAREST = Condition("mode", allowed=("nearest",), default="nearest")

RULES: dict[str, OpRule] = {
    # data movement: the same values in another place, so the scale carries over
    "MaxPool": OpRule(shares_scale=(0,)),  # a max of values keeps their scale
    "Reshape": OpRule(shares_scale=(0,)),
    "Flatten": OpRule(shares_scale=(0,)),
    "Transpose": OpRule(shares_scale=(0,)),
    "Slice": OpRule(shares_scale=(0,)),
    "Squeeze": OpRule(shares_scale=(0,)),
    "Unsqueeze": OpRule(shares_scale=(0,)),
    "Identity": OpRule(shares_scale=(0,)),
    # TensorRT's ONNX parser builds inference graphs, where Dropout is an identity
    "Dropout": OpRule(shares_scale=(0,)),
    # only nearest-neighbour copies values; linear/cubic modes compute new ones
    "Resize": OpRule(shares_scale=(0,), when=_NEAREST),
    "Upsample": OpRule(shares_scale=(0,), when=_NEAREST),
    # TensorRT needs every input and the output in one format, or it inserts Reformats
    "Concat": OpRule(shares_scale=ALL),
    # residual joins: one IElementWiseLayer (kSUM) TensorRT fuses into the conv before it;
    # opset-9 files from Caffe2 (ResNet-50, ShuffleNet) write them as Sum
    "Add": OpRule(join=True),
    "Sum": OpRule(join=True),
    # compute layers TensorRT runs in INT8 when input and weight come from DQs; it fuses the DQs
    # into the layer and the next Q into its output
    "Conv": OpRule(weight=1, bias=2, layout="out_first", macs="per_output"),
    "ConvTranspose": OpRule(weight=1, bias=2, layout="transposed", macs="per_input"),
    "Gemm": OpRule(weight=1, bias=2, layout="in_out", transposed_by="transB", macs="matmul"),
    "MatMul": OpRule(weight=1, layout="in_out", macs="matmul"),
}


def rule_for(node: onnx.NodeProto) -> OpRule | None:
    """The row TensorRT applies to this ONNX node (None: no Q/DQ rule, or its condition fails)."""
    rule = RULES.get(node.op_type)
    if rule is None or rule.when is None:
        return rule
    value = next((a.s for a in node.attribute if a.name == rule.when.name), None)
    return rule if rule.when.holds(value) else None


def rule_for_attrs(op_type: str, attrs: Mapping[str, Any]) -> OpRule | None:
    """rule_for, for a node held as op type and attribute values (an onnx-graphsurgeon node)."""
    rule = RULES.get(op_type)
    if rule is None or rule.when is None:
        return rule
    return rule if rule.when.holds(attrs.get(rule.when.name)) else None


def shared_inputs(rule: OpRule, inputs: list) -> list:
    """The inputs (ONNX order) that share the output's scale under `rule`."""
    if rule.shares_scale is ALL:
        return list(inputs)
    return [inputs[i] for i in rule.shares_scale if i < len(inputs)]
