"""Attention in a Q/DQ ONNX graph (any tool's), found from its Softmax: the ONNX side of the MHA
rule in bevcc.trt.mha, shared by `onnx(attention_qdq)` (which rewrites what it finds) and
`onnx(mha_check)` (which reports it), so the two cannot disagree on what an attention is.

From each Softmax the score path is walked back through the ops SCORE_PATH_OPS admits (scale,
bias and mask, reshapes) and through Q/DQ pairs, to the first MatMul; the probabilities are
followed forward through inference identities and Q/DQ to the second MatMul, which reads them as
its first input. A Softmax that reaches no MatMul either way is not attention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from bevcc.trt.mha import PROBS_PATH_OPS, SCORE_PATH_OPS
from bevcc.trt.rules import rule_for_attrs

_QUANTIZE, _DEQUANTIZE = "QuantizeLinear", "DequantizeLinear"


@dataclass
class Edge:
    """Input `index` of `node`."""

    node: gs.Node
    index: int

    @property
    def tensor(self) -> gs.Tensor:
        return self.node.inputs[self.index]


@dataclass
class Attention:
    softmax: gs.Node
    first: gs.Node  # MatMul(Q, K^T)
    second: gs.Node | None  # MatMul(P, V); None when the probabilities reach no MatMul
    # score-path edges that read a DequantizeLinear (on the scores, a bias or a mask input)
    score_qdq: list[Edge] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.softmax.name or self.softmax.outputs[0].name

    def operands(self) -> dict[str, Edge]:
        """q, k (first matmul) and v (second matmul): the inputs TensorRT wants quantized."""
        found = {"q": Edge(self.first, 0), "k": Edge(self.first, 1)}
        if self.second is not None:
            found["v"] = Edge(self.second, 1)
        return found

    def quantized(self) -> bool:
        """Whether any matmul operand is quantized: an attention meant to run in INT8.
        An attention with no Q/DQ on q, k or v is float and stays float."""
        return any(dequantized(e.tensor) is not None for e in self.operands().values())

    def output_quantized(self) -> bool:
        """Whether every reader of the second matmul's output quantizes it, directly or after
        data movement TensorRT moves a Q back through (Swin: Transpose, Reshape, then the
        projection's input Q/DQ): the Q/DQ 'after the second matmul' of the rule."""
        if self.second is None:
            return False
        stack = [self.second.outputs[0]]
        for _ in range(256):  # a few Transpose/Reshape per reader; never loop on a bad graph
            if not stack:
                return True
            tensor = stack.pop()
            if not tensor.outputs:
                return False  # a graph output: nothing quantizes it
            for reader in tensor.outputs:
                if reader.op == _QUANTIZE:
                    continue
                rule = rule_for_attrs(reader.op, reader.attrs)
                if rule is None or rule.shares_scale != (0,) or reader.inputs[0] is not tensor:
                    return False
                stack.append(reader.outputs[0])
        return False

    def probs_edge(self) -> Edge | None:
        return None if self.second is None else Edge(self.second, 0)

    def probs_qdq(self) -> tuple[gs.Node, gs.Node] | None:
        """The (Q, DQ) pair the second matmul reads the probabilities through, if any."""
        edge = self.probs_edge()
        dq = edge.tensor.inputs[0] if edge and edge.tensor.inputs else None
        if dq is None or dq.op != _DEQUANTIZE or not dq.inputs[0].inputs:
            return None
        q = dq.inputs[0].inputs[0]
        return (q, dq) if q.op == _QUANTIZE else None


def find_attention(graph: gs.Graph) -> list[Attention]:
    """Every Softmax whose input comes from a MatMul through the score path, in graph order."""
    found = []
    for softmax in [n for n in graph.nodes if n.op == "Softmax"]:
        walk = _score_path(softmax)
        if walk is None:
            continue
        first, score_qdq = walk
        found.append(Attention(softmax, first, _second_matmul(softmax), score_qdq))
    return found


def dequantized(tensor: gs.Tensor) -> gs.Node | None:
    """The DequantizeLinear `tensor` comes from, directly or through data movement TensorRT
    moves a DQ through (bevcc.trt.rules); None if it comes from none."""
    for _ in range(64):  # data-movement chains are short; never loop on a malformed graph
        if not tensor.inputs:
            return None
        producer = tensor.inputs[0]
        if producer.op == _DEQUANTIZE:
            return producer
        rule = rule_for_attrs(producer.op, producer.attrs)
        if rule is None or rule.shares_scale != (0,):
            return None
        tensor = producer.inputs[0]
    return None


def scale_value(node: gs.Node) -> np.ndarray | None:
    """A Q/DQ's scale in its own type (fp16 in an fp16 file), or None when not a constant."""
    scale = node.inputs[1] if len(node.inputs) > 1 else None
    return np.asarray(scale.values) if isinstance(scale, gs.Constant) else None


def _score_path(softmax: gs.Node) -> tuple[gs.Node, list[Edge]] | None:
    """(the first MatMul, the score-path edges reading a DQ), or None when no MatMul is reached.
    Each edge is walked once; a Q/DQ pair is walked through to the float tensor it quantizes."""
    first, score_qdq = None, []
    stack, seen = [Edge(softmax, 0)], set()
    while stack:
        edge = stack.pop()
        if (id(edge.node), edge.index) in seen:
            continue
        seen.add((id(edge.node), edge.index))
        tensor = edge.tensor
        if tensor.inputs and tensor.inputs[0].op == _DEQUANTIZE:
            score_qdq.append(edge)
            tensor = float_source(tensor.inputs[0])
        if tensor is None or not tensor.inputs:
            continue  # a graph input, a constant, or stored int8 values
        producer = tensor.inputs[0]
        if producer.op == "MatMul":
            first = first or producer
            continue
        rule = SCORE_PATH_OPS.get(producer.op)
        if rule is not None:
            stack.extend(
                Edge(producer, i)
                for i in rule.scores
                if i < len(producer.inputs) and not isinstance(producer.inputs[i], gs.Constant)
            )
    return None if first is None else (first, score_qdq)


def float_source(dq: gs.Node) -> gs.Tensor | None:
    """The float tensor a DQ's value was quantized from (through chained pairs); None for a DQ
    of stored int8 values."""
    for _ in range(64):
        quantized = dq.inputs[0]
        q = quantized.inputs[0] if quantized.inputs else None
        if q is None or q.op != _QUANTIZE:
            return None
        tensor = q.inputs[0]
        if not (tensor.inputs and tensor.inputs[0].op == _DEQUANTIZE):
            return tensor
        dq = tensor.inputs[0]
    return None


def _second_matmul(softmax: gs.Node) -> gs.Node | None:
    """The MatMul that reads the probabilities as its first input, through inference identities
    and Q/DQ; None if there is none (or more than one: not an attention TensorRT fuses)."""
    found, stack = [], [softmax.outputs[0]]
    while stack:
        tensor = stack.pop()
        for consumer in tensor.outputs:
            if consumer.op == "MatMul" and consumer.inputs[0] is tensor:
                found.append(consumer)
            elif _passes_probs(consumer) and consumer.inputs[0] is tensor:
                stack.append(consumer.outputs[0])
    return found[0] if len(found) == 1 else None


def _passes_probs(node: gs.Node) -> bool:
    return node.op in PROBS_PATH_OPS or node.op in (_QUANTIZE, _DEQUANTIZE)
