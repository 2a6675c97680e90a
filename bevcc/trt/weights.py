"""How a compute layer's weight is laid out: the `layout` column of bevcc.trt.rules.

A layout says where the weight's output channels are (BatchNorm folds per output channel), on
which axis TensorRT takes per-channel weight scales (the encoding check and qdq_insert), and
what the quant config calls such a layer. The names are bn_fold's (bevcc/passes/bn_fold/_math.py
folds each of them). A new layer op names one of these in its row; a new layout is one row here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import onnx

from bevcc.trt.rules import OpRule


@dataclass(frozen=True)
class WeightLayout:
    out_axis: int  # the axis holding the output channels
    per_group: bool  # out_axis holds output channels per group: times the `group` attribute
    scale_axis: int  # the axis TensorRT takes per-channel weight scales on
    kind: str  # the layer's op type in quant configs (bevcc.quant.config.OP_TYPES)
    # a non-constant weight is a second activation (a matmul of two tensors): both operands
    # are quantized per tensor; otherwise a computed weight stays float
    operand: bool = False
    rank: int | None = None  # only a constant of this rank is a weight (MatMul's 2-D B)


LAYOUTS: dict[str, WeightLayout] = {
    # Conv: [Cout, Cin/groups, k...]
    "out_first": WeightLayout(out_axis=0, per_group=False, scale_axis=0, kind="conv"),
    # ConvTranspose: [Cin, Cout/groups, k...]. NVIDIA's kernels take per-channel scales only on
    # axis 0 of it (TensorRT#2380); the conv_transpose_axis options choose (TRANSPOSED below)
    "transposed": WeightLayout(out_axis=1, per_group=True, scale_axis=0, kind="conv_transpose"),
    # Gemm's and MatMul's B: [K, N], the output channels last
    "in_out": WeightLayout(
        out_axis=1, per_group=False, scale_axis=1, kind="linear", operand=True, rank=2
    ),
}
TRANSPOSED = "transposed"  # the layout whose scale axis conv_transpose_axis options override


def layout_of(rule: OpRule, attrs: Mapping[str, Any]) -> str:
    """The layout of this node's weight: its row's, or out_first where the row's
    `transposed_by` attribute is set ([N, K] instead of [K, N])."""
    if rule.transposed_by is not None and attrs.get(rule.transposed_by, 0):
        return "out_first"
    return rule.layout


def scale_axis(
    rule: OpRule, attrs: Mapping[str, Any], overrides: Mapping[str, int] | None = None
) -> int:
    """The per-channel axis of this node's weight scales; `overrides`: layout -> axis chosen by
    an option (conv_transpose_axis: {TRANSPOSED: axis})."""
    layout = layout_of(rule, attrs)
    return (overrides or {}).get(layout, LAYOUTS[layout].scale_axis)


def out_channels(rule: OpRule, attrs: Mapping[str, Any], shape) -> int:
    """The output channels of a layer whose weight has `shape`."""
    layout = LAYOUTS[layout_of(rule, attrs)]
    count = int(shape[layout.out_axis])
    return count * int(attrs.get("group", 1)) if layout.per_group else count


def onnx_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """An onnx.NodeProto's attributes as values (an onnx-graphsurgeon node has `.attrs`)."""
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
