"""onnx `mha_check`: does a Q/DQ file quantize its attention the way TensorRT's INT8 MHA fuses?

`bevcc lint` checks scales per scale domain and the MAC share; it has no notion of attention, so
it passes a file whose scores are quantized between Q.K^T and the Softmax (which stops TensorRT
from fusing the MHA into one INT8 kernel) and whose softmax output has a calibrated scale
(TensorRT's INT8 MHA kernels take probabilities with scale 1/127 by default). This pass fails
with one line naming the first offending node; it changes nothing. It reads any tool's file.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from bevcc import InputError, Pass, PassResult
from bevcc_swin.options import MhaCheckOptions

_SCORE_PATH_OPS = {"Reshape", "Unsqueeze", "Add", "Identity"}
_QDQ = {"QuantizeLinear", "DequantizeLinear"}


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
        for softmax in [n for n in ir.graph.nodes if n.op == "Softmax"]:
            score_qdq, reaches_quantized_matmul = _score_path(softmax)
            if not reaches_quantized_matmul:
                continue  # not attention, or float attention: nothing to fuse in INT8
            checked += 1
            problems += [
                f"{node.name or node.op} quantizes the scores feeding Softmax {softmax.name}"
                for node in score_qdq
            ]
            problems += self._softmax_scale(softmax)
        if problems:
            raise InputError(
                f"{len(problems)} attention Q/DQ problem(s) TensorRT's INT8 MHA "
                f"fusion rejects, first: {problems[0]}; quantize with "
                "fx(qdq_insert,quantizer_unify,attention_qdq)"
            )
        return PassResult(ir, modified=False, stats={"attention": checked})

    def _softmax_scale(self, softmax) -> list[str]:
        if self.options.softmax_amax is None:
            return []
        want = np.float32(self.options.softmax_amax) / np.float32(127)
        out = []
        for consumer in softmax.outputs[0].outputs:
            if consumer.op == "QuantizeLinear":
                scale = np.asarray(consumer.inputs[1].values, np.float32)
                if scale.shape not in ((), (1,)) or scale.reshape(()) != want:
                    out.append(
                        f"{consumer.name} quantizes Softmax {softmax.name} with scale "
                        f"{scale.reshape(-1)[0]:.6g}, not {want:.6g}"
                    )
        return out


def _score_path(softmax):
    """(Q/DQ nodes between the softmax input and the first matmul, whether that matmul reads
    dequantized inputs). Walks back through reshapes and Adds only."""
    found, quantized_matmul = [], False
    stack, seen = [softmax.inputs[0]], set()
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen or not tensor.inputs:
            continue
        seen.add(id(tensor))
        node = tensor.inputs[0]
        if node.op == "MatMul":
            quantized_matmul |= all(
                t.inputs and t.inputs[0].op == "DequantizeLinear" for t in node.inputs
            )
        elif node.op in _QDQ:
            if node.op == "DequantizeLinear":
                found.append(node)
            stack.append(node.inputs[0])
        elif node.op in _SCORE_PATH_OPS:
            stack.extend(t for t in node.inputs if not isinstance(t, gs.Constant))
    return found, quantized_matmul
