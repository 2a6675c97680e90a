"""onnx `mha_check`: does a Q/DQ file quantize its attention the way TensorRT's INT8 MHA fuses?

`bevcc lint` checks scales per scale domain and the MAC share; it has no notion of attention, so
it passes a file whose scores are quantized between Q.K^T and the Softmax (which stops TensorRT
from fusing the MHA into one INT8 kernel) and whose softmax output has a calibrated scale
(TensorRT's INT8 MHA kernels take probabilities with scale 1/127 by default). This pass fails
with one line naming the first offending node; it changes nothing. It reads any tool's file, and
finds attention as onnx(attention_qdq) does (bevcc_swin.onnx_attention; the rule: bevcc.trt.mha).
An attention is checked when any of q, k, v is quantized; one with none quantized is float.
"""

from __future__ import annotations

import numpy as np

from bevcc import InputError, Pass, PassResult
from bevcc_swin.onnx_attention import Attention, dequantized, find_attention, scale_value
from bevcc_swin.options import MhaCheckOptions


class MhaCheck(Pass):
    name = "mha_check"
    summary = (
        "Fail unless every quantized attention has no Q/DQ between Q.K^T and Softmax and "
        "a softmax-output scale of amax/127 (ONNX; changes nothing)."
    )
    ir = "onnx"
    Options = MhaCheckOptions

    def call(self, ir) -> PassResult:
        problems, checked = [], 0
        for attention in find_attention(ir.graph):
            if not attention.quantized():
                continue  # float attention: nothing to fuse in INT8
            checked += 1
            problems += _operands(attention)
            problems += [
                f"{edge.tensor.inputs[0].name or 'DequantizeLinear'} quantizes the scores "
                f"feeding Softmax {attention.name}"
                for edge in attention.score_qdq
            ]
            problems += self._softmax_scale(attention)
        if problems:
            raise InputError(
                f"{len(problems)} attention Q/DQ problem(s) TensorRT's INT8 MHA "
                f"fusion rejects, first: {problems[0]}; quantize with "
                "fx(qdq_insert,quantizer_unify,attention_qdq), or rewrite the Q/DQ file "
                "with onnx(attention_qdq)"
            )
        return PassResult(ir, modified=False, stats={"attention": checked})

    def _softmax_scale(self, attention: Attention) -> list[str]:
        if self.options.softmax_amax is None or attention.second is None:
            return []
        pair = attention.probs_qdq()
        if pair is None:
            second = attention.second.name
            return [f"Softmax {attention.name} output reaches MatMul {second} without a Q/DQ"]
        q = pair[0]
        scale = scale_value(q)
        # amax/127 in the scale's own type: an fp16 file holds 1/127 as fp16 (0.0078735)
        want = np.float32(self.options.softmax_amax) / np.float32(127)
        if scale is not None:
            want = want.astype(scale.dtype)
        if scale is None or scale.size != 1 or scale.reshape(()) != want:
            shown = "not a constant" if scale is None else f"{scale.reshape(-1)[0]:.6g}"
            problem = (
                f"{q.name} quantizes Softmax {attention.name} with scale {shown}, not {want:.6g}"
            )
            return [problem]
        return []


def _operands(attention: Attention) -> list[str]:
    out = [
        f"{role} (input {edge.index} of MatMul {edge.node.name}) of the quantized attention "
        f"at Softmax {attention.name} has no Q/DQ"
        for role, edge in attention.operands().items()
        if dequantized(edge.tensor) is None
    ]
    if attention.second is None:
        out.append(f"the probabilities of Softmax {attention.name} reach no second MatMul")
    elif not attention.output_quantized():
        out.append(
            f"the output of MatMul {attention.second.name} (Softmax {attention.name}) reaches "
            "no Q/DQ; TensorRT's INT8 MHA wants one after the second matmul"
        )
    return out
