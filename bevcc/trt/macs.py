"""Multiply-accumulates of an ONNX graph's compute layers, counted the way each row of
bevcc.trt.rules says (`macs`). `bevcc lint` reports the INT8 share of them and sensitivity units
weigh layers by them: one count for both."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from bevcc.ir.onnx_shapes import InferenceCrash, infer_shapes
from bevcc.trt.rules import OpRule, rule_for

if TYPE_CHECKING:
    from bevcc.trt.domains import QdqGraph


def tensor_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Every tensor's inferred shape; symbolic dimensions count as 1. A model that crashes
    onnx's inference raises InferenceCrash: it is malformed, not just hard to count."""
    try:
        inferred = infer_shapes(model)
    except InferenceCrash:
        raise
    except Exception:  # noqa: BLE001 - without shapes MACs fall back to weight sizes
        inferred = model
    shapes = {}
    for info in (
        list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    ):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def node_macs(node: onnx.NodeProto, shapes: dict[str, list[int]], graph: QdqGraph) -> int:
    """Multiply-accumulates of one layer (0 for anything else, or where shapes are unknown);
    symbolic dimensions count as 1 (the INT8 share does not depend on them)."""
    rule = rule_for(node)
    if rule is None or rule.macs is None:
        return 0
    return _FORMULAS[rule.macs](node, rule, shapes, graph)


def _per_output(node, rule: OpRule, shapes, graph) -> int:
    weight, out = _weight_shape(node, rule, shapes, graph), shapes.get(node.output[0])
    return int(np.prod(out) * np.prod(weight[1:])) if weight and out else 0


def _per_input(node, rule: OpRule, shapes, graph) -> int:
    weight, x = _weight_shape(node, rule, shapes, graph), shapes.get(node.input[0])
    return int(np.prod(x) * np.prod(weight[1:])) if weight and x else 0


def _matmul(node, rule: OpRule, shapes, graph) -> int:
    out, a = shapes.get(node.output[0]), shapes.get(node.input[0])
    if not (out and a):
        return 0
    transposed = any(x.name == "transA" and x.i for x in node.attribute)  # Gemm's A is [K, M]
    return int(np.prod(out) * (a[0] if transposed else a[-1]))


_FORMULAS = {"per_output": _per_output, "per_input": _per_input, "matmul": _matmul}


def _weight_shape(node, rule: OpRule, shapes, graph):
    """The weight's shape, looking through its DQ (and Q) to the initializer."""
    if len(node.input) <= rule.weight:
        return None
    name = node.input[rule.weight]
    for _ in range(3):
        if name in shapes:
            return shapes[name]
        producer = graph.producer.get(name)
        if producer is None:
            return None
        name = producer.input[0]
    return None
