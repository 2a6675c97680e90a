"""onnx `attention_qdq`: the FX pass's Q/DQ placement for TensorRT's INT8 MHA fusion, on a Q/DQ
ONNX written by any tool (bevcc's onnx(qdq_insert,quantizer_unify), bevcc's FX export,
modelopt's ONNX quantization).

For each attention that runs in INT8 (bevcc_swin.onnx_attention finds it; the rule is
bevcc.trt.mha), the pass
  * removes every Q/DQ between the first MatMul and the Softmax, on the scores and on a bias or
    mask input (a score-path edge reads the float tensor under its Q/DQ instead; Q/DQ nothing
    else reads are dropped), unless float_scores=false;
  * gives the probabilities the second MatMul reads a Q/DQ at scale softmax_amax/127: a
    calibrated scale is replaced (on a pair of its own when the pair or its scale is shared with
    other tensors), a missing pair is inserted; softmax_amax=none keeps a calibrated one.
q, k and v must already be quantized: their scales come from calibration, which this pass does
not do. An attention that quantizes some of them and not others is one error line.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from bevcc import InputError, Pass, PassResult
from bevcc.ir.onnx import OnnxIR
from bevcc_swin.onnx_attention import Attention, dequantized, find_attention, float_source
from bevcc_swin.options import AttentionQdqOptions, attention_report


class AttentionQdqOnnx(Pass):
    name = "attention_qdq"
    summary = (
        "Make a Q/DQ file's attention TensorRT-MHA-ready: no Q/DQ between Q.K^T and Softmax, "
        "softmax output quantized at softmax_amax/127 (ONNX, any tool's file; after "
        "quantizer_unify)."
    )
    ir = "onnx"
    quantizes = True
    Options = AttentionQdqOptions

    def report(self, stats: dict) -> list[str]:
        line = attention_report(stats, self.options.softmax_amax)
        extra = f" (inserted {stats['softmax_inserted']}); float attention left as is: "
        return [line + extra + str(stats["float_attention"])]

    def call(self, ir: OnnxIR) -> PassResult:
        graph = ir.graph
        found = find_attention(graph)
        quantized = [a for a in found if a.quantized()]
        for attention in quantized:
            _require_operands(attention)
        removed = fixed = inserted = 0
        names = _Names(graph)
        for attention in quantized:
            if self.options.float_scores:
                for edge in attention.score_qdq:
                    source = float_source(edge.tensor.inputs[0])
                    if source is not None:  # (a DQ of stored int8 values has no float above it)
                        edge.node.inputs[edge.index] = source
                        removed += 1
            if self.options.softmax_amax is not None:
                change = _fix_probs(graph, attention, self.options.softmax_amax, names)
                fixed += change != "kept"
                inserted += change == "inserted"
        changed = bool(removed or fixed)
        if changed:
            graph.cleanup(remove_unused_graph_inputs=False)
            graph.toposort()
        return PassResult(
            ir,
            modified=changed,
            stats={
                "attention": len(quantized),
                "score_quantizers": removed,
                "softmax_fixed": fixed,
                "softmax_inserted": inserted,
                "float_attention": len(found) - len(quantized),
            },
        )


def _require_operands(attention: Attention) -> None:
    missing = [
        f"{role} (input {edge.index} of MatMul {edge.node.name})"
        for role, edge in attention.operands().items()
        if dequantized(edge.tensor) is None
    ]
    if attention.second is None:
        missing.append("the second MatMul (the probabilities reach none)")
    if missing:
        raise InputError(
            f"attention at Softmax {attention.name} is partly quantized: no Q/DQ on "
            f"{', '.join(missing)}, and attention_qdq cannot calibrate a scale; quantize every "
            "MatMul input (onnx(qdq_insert) does) or none of this attention's"
        )


def _fix_probs(graph: gs.Graph, attention: Attention, amax: float, names: _Names) -> str:
    """Give the second matmul's probabilities a Q/DQ at amax/127: 'kept' (already so),
    'rescaled' or 'inserted'."""
    edge = attention.probs_edge()
    pair = attention.probs_qdq()
    # a DQ returns its scale's type: fp16 scales in an fp16 graph
    dtype = edge.tensor.dtype if edge.tensor.dtype in (np.float16, np.float32) else np.float32
    if pair is not None:
        q, dq = pair
        old = q.inputs[1]
        dtype = old.values.dtype if isinstance(old, gs.Constant) else dtype
        target = (np.asarray(amax, np.float32) / np.float32(127)).astype(dtype)
        if _is_symmetric_at(q, target) and _is_symmetric_at(dq, target):
            return "kept"
        if _exclusive(q, dq, edge):
            scale, zero = _qparams(target, names)
            for node in (q, dq):
                node.inputs[1] = scale
                if len(node.inputs) > 2:
                    node.inputs[2] = zero
                else:
                    node.inputs.append(zero)
            q.outputs[0].dtype = np.int8  # (a uint8 pair, onnxruntime's default, becomes int8)
            return "rescaled"
        source = q.inputs[0]  # shared with other readers: the second matmul gets its own pair
    else:
        source = edge.tensor
    target = (np.asarray(amax, np.float32) / np.float32(127)).astype(dtype)
    edge.node.inputs[edge.index] = _qdq(graph, source, target, names)
    return "rescaled" if pair is not None else "inserted"


def _is_symmetric_at(node: gs.Node, scale: np.ndarray) -> bool:
    value = node.inputs[1]
    zero = node.inputs[2] if len(node.inputs) > 2 else None
    return (
        isinstance(value, gs.Constant)
        and np.asarray(value.values).size == 1
        and np.asarray(value.values).reshape(()) == scale
        and (zero is None or (isinstance(zero, gs.Constant) and zero.values.dtype == np.int8))
        and (zero is None or not np.asarray(zero.values).any())
    )


def _exclusive(q: gs.Node, dq: gs.Node, edge) -> bool:
    """The pair serves only the second matmul and reads no scale another Q/DQ reads."""
    if q.outputs[0].outputs != [dq] or dq.outputs[0].outputs != [edge.node]:
        return False
    return all(
        len(t.outputs) == (2 if q in t.outputs and dq in t.outputs else 1) for t in q.inputs[1:]
    )


def _qparams(scale: np.ndarray, names: _Names) -> tuple[gs.Constant, gs.Constant]:
    return (
        gs.Constant(names.fresh("softmax_scale"), np.asarray(scale).reshape(())),
        gs.Constant(names.fresh("softmax_zero_point"), np.zeros((), np.int8)),
    )


def _qdq(graph: gs.Graph, tensor: gs.Tensor, scale: np.ndarray, names: _Names) -> gs.Variable:
    value, zero = _qparams(scale, names)
    quantized = gs.Variable(names.fresh(f"{tensor.name}_mha_q"), np.int8, tensor.shape)
    out = gs.Variable(names.fresh(f"{tensor.name}_mha_dq"), tensor.dtype, tensor.shape)
    graph.nodes.append(
        gs.Node(
            "QuantizeLinear",
            names.fresh(f"{tensor.name}_mha_Q"),
            inputs=[tensor, value, zero],
            outputs=[quantized],
        )
    )
    graph.nodes.append(
        gs.Node(
            "DequantizeLinear",
            names.fresh(f"{tensor.name}_mha_DQ"),
            inputs=[quantized, value, zero],
            outputs=[out],
        )
    )
    return out


class _Names:
    """Names not yet used by a tensor or node of the graph."""

    def __init__(self, graph: gs.Graph):
        self.used = set(graph.tensors()) | {n.name for n in graph.nodes}

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name
