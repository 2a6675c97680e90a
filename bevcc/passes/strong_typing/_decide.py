"""Which nodes keep fp32, and why: the rules fp16 imposes (bevcc.trt.fp16), applied to the
evidence (calibrated ranges, initializer values) and to the user's keep_fp32 list."""

from __future__ import annotations

import re

import numpy as np
import onnx

from bevcc.trt.fp16 import (
    FLUSH_SHARE,
    FP16_MAX,
    FP16_MIN_NORMAL,
    flushed_share,
    overflows,
    underflows,
)

# Q/DQ take their types from their scale (AutoCast types them with their neighbours); a Cast
# states its own type. Neither computes in a precision of its own.
UNTYPED = {"QuantizeLinear", "DequantizeLinear", "Cast"}


def fp32_nodes(
    model: onnx.ModelProto,
    ranges: dict[str, float] | None,
    weights: dict[str, np.ndarray],
    keep: list[str],
) -> dict[str, str]:
    """{node name: reason} for every node that must compute in fp32. `ranges` None: no
    calibration data, activations are not checked."""
    patterns = [re.compile(p) for p in keep]
    decided: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type in UNTYPED:
            continue
        reason = _reason(node, ranges, weights, patterns)
        if reason:
            decided[node.name] = reason
    return decided


def _reason(node, ranges, weights, patterns) -> str | None:
    for pattern in patterns:
        if pattern.fullmatch(node.name):
            return f"keep_fp32 names it ({pattern.pattern})"
    for name in node.input:
        if name in weights:
            values = weights[name]
            absmax = float(np.abs(values).max(initial=0.0))
            if overflows(absmax):
                return f"weight {name} reaches {absmax:.4g}, over fp16's {FP16_MAX:g}"
            share = flushed_share(values)
            if share > FLUSH_SHARE:
                return f"weight {name}: {100 * share:.2g}% of its nonzero values round to 0 in fp16"
    if ranges is None:
        return None
    for kind, names in (("input", node.input), ("output", node.output)):
        for name in names:
            absmax = ranges.get(name)
            if absmax is None:
                continue
            if overflows(absmax):
                return (
                    f"{kind} {name} reaches {absmax:.4g} on the calibration data, over fp16's "
                    f"{FP16_MAX:g}"
                )
            if underflows(absmax):
                return (
                    f"{kind} {name} stays under {absmax:.3g} on the calibration data, below "
                    f"fp16's smallest normal {FP16_MIN_NORMAL:.3g} (it would lose precision or "
                    "flush to 0)"
                )
    return None
