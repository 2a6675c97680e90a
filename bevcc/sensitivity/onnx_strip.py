"""Keep units of a Q/DQ ONNX file float: remove their Q/DQ pairs so the layers read float tensors.

A DQ(Q(x)) pair is bypassed (its readers read x); a weight's DQ(Q(w)) likewise reads w again; a
DQ of a stored int8 weight becomes the float initializer it computes (the original float weight
is not in the file). A DQ output that is a graph output keeps its name through an Identity.
Scales, zero points and int8 weights nothing reads any more go, with their value_info and, in
IR version 3 files, their graph-input entries. The input model is not modified.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def strip(model: onnx.ModelProto, units) -> onnx.ModelProto:
    """A copy of `model` without the Q/DQ nodes of `units` (OnnxUnit: their `outputs`)."""
    removed = {name for unit in units for name in unit.outputs}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not removed:
        return out
    graph = out.graph
    producer = {o: n for n in graph.node for o in n.output}
    constants = {t.name: t for t in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    bypass: dict[str, str] = {}  # removed DQ output -> the float tensor its readers read now
    nodes: list[onnx.NodeProto] = []  # what stays, in order; removed Qs are decided below
    added, dropped_inputs = [], []
    for node in graph.node:
        if node.output[0] not in removed:
            nodes.append(node)
            continue
        dropped_inputs += [n for n in node.input[1:] if n]
        source = producer.get(node.input[0])
        if node.op_type == "QuantizeLinear":
            nodes.append(node)
        elif source is not None and source.op_type == "QuantizeLinear":
            if node.output[0] in graph_outputs:  # the output keeps its name
                nodes.append(
                    helper.make_node(
                        "Identity",
                        [source.input[0]],
                        [node.output[0]],
                        name=f"{node.output[0]}_float",
                    )
                )
            else:
                bypass[node.output[0]] = source.input[0]
        else:
            dropped_inputs.append(node.input[0])
            added.append(_dequantized(node, constants, producer))

    def pending(node) -> bool:  # a removed Q: it goes unless something else still reads it
        return node.op_type == "QuantizeLinear" and node.output[0] in removed

    others = [n for n in nodes if not pending(n)]
    for node in others:
        _rename_inputs(node, bypass)
    read = {n for node in others for n in _all_inputs(node)} | graph_outputs
    kept = [n for n in nodes if not pending(n) or n.output[0] in read]
    read |= {n for node in kept for n in node.input}
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(added)
    gone = {n for n in dropped_inputs if n not in read}
    _drop_constants(graph, gone)
    live = (
        {o for node in graph.node for o in node.output}
        | {t.name for t in graph.initializer}
        | {i.name for i in graph.input}
    )
    _keep(graph.value_info, lambda v: v.name in live)
    _keep(graph.input, lambda v: v.name not in gone)
    return out


def _resolve(bypass: dict[str, str], name: str) -> str:
    seen = 0
    while name in bypass and seen <= len(bypass):  # DQ(Q(DQ(Q(x)))) chains end at x
        name, seen = bypass[name], seen + 1
    return name


def _rename_inputs(node: onnx.NodeProto, bypass: dict[str, str]) -> None:
    for i, name in enumerate(node.input):
        if name in bypass:
            node.input[i] = _resolve(bypass, name)
    for attribute in node.attribute:  # subgraphs read outer tensors by name
        for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
            for inner in sub.node:
                _rename_inputs(inner, bypass)


def _all_inputs(node: onnx.NodeProto):
    yield from (n for n in node.input if n)
    for attribute in node.attribute:
        for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
            for inner in sub.node:
                yield from _all_inputs(inner)


def _constant(name: str, constants, producer) -> np.ndarray:
    if name in constants:
        return numpy_helper.to_array(constants[name])
    node = producer[name]  # a Constant node
    return numpy_helper.to_array(node.attribute[0].t)


def _dequantized(dq: onnx.NodeProto, constants, producer) -> onnx.TensorProto:
    """The float initializer a DQ of a stored int8 weight computes, named as its output."""
    values = _constant(dq.input[0], constants, producer).astype(np.float64)
    scale = _constant(dq.input[1], constants, producer)
    zero = (
        _constant(dq.input[2], constants, producer)
        if len(dq.input) > 2 and dq.input[2]
        else np.zeros_like(scale, np.int8)
    )
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    shape = [1] * values.ndim
    if scale.ndim == 1 and values.ndim > 0:
        shape[axis % values.ndim] = scale.size
    result = (values - zero.astype(np.float64).reshape(shape if zero.ndim else ())) * scale.astype(
        np.float64
    ).reshape(shape if scale.ndim else ())
    return numpy_helper.from_array(result.astype(scale.dtype), dq.output[0])


def _drop_constants(graph: onnx.GraphProto, gone: set[str]) -> None:
    _keep(graph.initializer, lambda t: t.name not in gone)
    kept = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] in gone)]
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)


def _keep(container, wanted) -> None:
    items = [item for item in container if wanted(item)]
    if len(items) != len(container):
        del container[:]
        container.extend(items)
