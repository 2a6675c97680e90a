"""Units of a Q/DQ ONNX file: scale domains plus the weight Q/DQ of the layers they feed.

A scale domain (bevcc.trt.domains: a tensor, what TensorRT's data-movement ops make of it, all
inputs of a Concat) runs in one INT8 format, so its Q/DQ pairs are switched together: removing
part of a domain would leave TensorRT a Reformat. Q/DQ reading one scale initializer (what
quantizer_unify shares, e.g. both inputs of an Add under `add=shared`) are one unit too. A layer
(a node reading a weight's DQ) joins the domains of its activation inputs, as on the FX path a
layer's weight quantizer joins its input quantizers, and an Add whose inputs all come from DQs
joins its inputs' domains (it runs INT8 as a whole or not at all, as on the FX path). A weight
Q/DQ whose layer reads float activations, and a domain feeding no layer, are units of their own.
Union-find, linear time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from bevcc.ir.union_find import UnionFind
from bevcc.trt.domains import QdqGraph
from bevcc.trt.macs import node_macs, tensor_shapes  # lint's MAC count, not a second one
from bevcc.trt.rules import rule_for

_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class OnnxUnit:
    name: str  # the first layer's node name (or the first Q/DQ's, for layer-less units)
    layers: list[str] = field(default_factory=list)
    quantizers: list[str] = field(default_factory=list)  # its Q and DQ nodes' names
    macs: int = 0
    # outputs of its Q/DQ nodes: what removal keys on (node names may be empty or repeated)
    outputs: list[str] = field(default_factory=list)


def node_names(nodes: list[onnx.NodeProto]) -> list[str]:
    """A unique name per node: its own, or its first output's where it has none or shares it."""
    count: dict[str, int] = {}
    for node in nodes:
        count[node.name] = count.get(node.name, 0) + 1
    return [n.name if n.name and count[n.name] == 1 else n.output[0] for n in nodes]


def find_units(model: onnx.ModelProto) -> list[OnnxUnit]:
    view = QdqGraph(model)
    view.domain_scales()  # also joins each activation DQ's output to its Q's input
    groups = UnionFind()
    activation_dq: set[str] = set()  # outputs of activation DQs (for the Add rule)
    weight_dq: set[str] = set()
    layers: dict[str, onnx.NodeProto] = {}  # key "l:<first output>" -> node
    for node in view.nodes:
        if node.op_type != "DequantizeLinear":
            continue
        dq_key = _key(node)
        q = view.producer.get(node.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            groups.union(dq_key, _key(q))
            source = q.input[0]
        elif node.input[0] in view.constants:
            q, source = None, node.input[0]  # a stored int8 weight: a DQ alone
        else:
            continue  # DQ of an int8 graph input: nothing float to fall back to
        if source in view.constants:
            weight_dq.add(node.output[0])
            groups.find(dq_key)
            for reader in view.consumers.get(node.output[0], []):
                if reader.op_type not in _QDQ:
                    layers["l:" + reader.output[0]] = reader
                    groups.union(dq_key, "l:" + reader.output[0])
            continue
        activation_dq.add(node.output[0])
        groups.union(dq_key, "d:" + view.domains.find(source))
        for member in (node, q):  # Q and DQ may hold equal scales in separate initializers
            if len(member.input) > 1:
                groups.union(dq_key, "s:" + member.input[1])
    for key, node in layers.items():
        for name in node.input:
            if name in activation_dq:  # read straight from a DQ
                groups.union(key, "n:" + name)
            elif (
                name and name not in weight_dq and "d:" + view.domains.find(name) in groups.parent
            ):  # through a MaxPool, ...
                groups.union(key, "d:" + view.domains.find(name))
    for node in view.nodes:
        inputs = [n for n in node.input if n]
        rule = rule_for(node)  # Add, and Sum (how opset-9 files write a residual join)
        if (
            rule is not None
            and rule.join
            and len(inputs) > 1
            and all(n in activation_dq for n in inputs)
        ):
            for name in inputs[1:]:
                groups.union("n:" + inputs[0], "n:" + name)
    return _collect(view, groups)


def _key(node: onnx.NodeProto) -> str:
    return "n:" + node.output[0]


def _collect(view: QdqGraph, groups: UnionFind) -> list[OnnxUnit]:
    """One OnnxUnit per group holding a Q/DQ, in graph order of the node that names it."""
    names = node_names(view.nodes)
    position = {n.output[0]: i for i, n in enumerate(view.nodes) if n.output}
    members: dict[str, list[str]] = {}  # group root -> keys ("n:"/"l:" + first output)
    for key in list(groups.parent):
        if key[0] in "nl":
            members.setdefault(groups.find(key), []).append(key)
    shapes = tensor_shapes(view.model)
    units = []
    for keys in members.values():
        qdq = sorted(position[k[2:]] for k in keys if k[0] == "n")
        found = sorted(position[k[2:]] for k in keys if k[0] == "l")
        if not qdq:
            continue
        first = found[0] if found else qdq[0]
        units.append(
            (
                first,
                OnnxUnit(
                    name=names[first],
                    layers=sorted(names[i] for i in found),
                    quantizers=sorted(names[i] for i in qdq),
                    macs=sum(node_macs(view.nodes[i], shapes, view) for i in found),
                    outputs=sorted(view.nodes[i].output[0] for i in qdq),
                ),
            )
        )
    return [unit for _, unit in sorted(units, key=lambda pair: pair[0])]
