"""Scale domains of a Q/DQ ONNX graph: the tensors TensorRT makes share one INT8 scale.

TensorRT moves DequantizeLinear forward and QuantizeLinear backward through data-movement ops,
so a tensor, the tensors those ops make from it, and all inputs of a Concat end up in one
INT8 format (which ops, and which of their inputs: the rows of bevcc.trt.rules); every Q or DQ
touching such a domain should carry one scale, or TensorRT inserts a Reformat (requantize) layer
for each extra scale. Union-find over tensor names, linear time.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from bevcc.ir.union_find import UnionFind
from bevcc.trt.rules import rule_for, shared_inputs


class QdqGraph:
    """Producers, consumers, constants and per-tensor activation Q/DQ of one ONNX graph."""

    def __init__(self, model: onnx.ModelProto):
        graph = model.graph
        self.model = model
        self.nodes = list(graph.node)
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.constant_derived = self._constant_derived()
        self.domains = UnionFind()
        for node in self.nodes:
            rule = rule_for(node)
            if rule is not None and rule.commutes:
                for name in shared_inputs(rule, list(node.input)):
                    if name:  # an omitted optional input
                        self.domains.union(name, node.output[0])

    def _constant_derived(self) -> set[str]:
        """Tensors computed from constants alone (an Unsqueeze'd bias, a Reshape'd weight):
        TensorRT folds them, and they never carry an activation scale. Nodes are in topological
        order (the ONNX checker requires it), so one pass sees every producer first."""
        derived = set(self.constants)
        for node in self.nodes:
            names = [n for n in node.input if n]
            if names and all(n in derived for n in names) and not node.op_type.startswith("Random"):
                derived.update(node.output)
        return derived

    def is_activation_add(self, node: onnx.NodeProto) -> bool:
        """A two-input Add/Sum joining two activations (a residual join), not a constant bias."""
        rule = rule_for(node)
        return (
            rule is not None
            and rule.join
            and len(node.input) == 2
            and not any(name in self.constant_derived for name in node.input)
        )

    def scale(self, qdq: onnx.NodeProto) -> np.ndarray | None:
        return self.constants.get(qdq.input[1]) if len(qdq.input) > 1 else None

    def is_activation_qdq(self, node: onnx.NodeProto) -> bool:
        """A per-tensor Q/DQ on an activation (not on a weight initializer)."""
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            return False
        scale = self.scale(node)
        if scale is None or scale.size != 1:
            return False
        source = node.input[0] if node.op_type == "QuantizeLinear" else self.q_input_of(node)
        return source is not None and source not in self.constants

    def q_input_of(self, dq: onnx.NodeProto) -> str | None:
        q = self.producer.get(dq.input[0])
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None

    def float_tensor(self, node: onnx.NodeProto) -> str:
        """The float tensor a Q reads or a DQ writes."""
        return node.input[0] if node.op_type == "QuantizeLinear" else node.output[0]

    def domain_scales(self) -> dict[str, dict[float, list[str]]]:
        """domain root -> {scale value -> Q/DQ node names} for activation Q/DQ.

        A Q reads tensor T and its DQ writes T': both belong to T's domain (they are one
        quantizer), so the DQ's output is joined to its Q's input.
        """
        for node in self.nodes:
            if node.op_type == "DequantizeLinear":
                source = self.q_input_of(node)
                if source is not None and self.is_activation_qdq(node):
                    self.domains.union(source, node.output[0])
        found: dict[str, dict[float, list[str]]] = {}
        for node in self.nodes:
            if self.is_activation_qdq(node):
                root = self.domains.find(self.float_tensor(node))
                value = float(np.asarray(self.scale(node)).reshape(()))
                found.setdefault(root, {}).setdefault(value, []).append(node.name or node.output[0])
        return found


def from_dq(graph: QdqGraph, name: str):
    """The DequantizeLinear `name` comes from, directly or through single-input ops TensorRT
    moves it through (a Concat's output is INT8 only if all its inputs are: not followed here);
    None if it does not come from one."""
    seen = 0
    while seen < 64:  # data-movement chains are short; never loop on a malformed graph
        producer = graph.producer.get(name)
        if producer is None:
            return None
        if producer.op_type == "DequantizeLinear":
            return producer
        rule = rule_for(producer)
        if rule is None or rule.shares_scale is None or len(rule.shares_scale) != 1:
            return None
        name, seen = producer.input[rule.shares_scale[0]], seen + 1
    return None
