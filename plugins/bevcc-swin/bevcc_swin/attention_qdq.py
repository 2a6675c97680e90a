"""fx `attention_qdq`: the Q/DQ placement TensorRT's INT8 multi-head-attention fusion needs.

TensorRT fuses Q.K^T -> (bias, mask) -> Softmax -> .V into one INT8 MHA kernel only when Q/DQ sit
before the first matmul, after the softmax and after the second matmul, and nowhere in between
(TensorRT developer guide, "MHA fusion"). bevcc's core gets the matmul inputs right (qdq_insert
quantizes both operands) but knows nothing about attention, so it gets two things wrong:
  * quantizer_unify sees the relative-position-bias Add and the shifted-window mask Add as Adds
    with no conv input and quantizes both of their inputs. That puts Q/DQ between the first
    matmul and the softmax, and the mask (-100) stretches the score scale to 100/127: every
    score is rounded to a step of 0.79 before the softmax;
  * the softmax output feeding the second matmul is calibrated like any activation, so its
    amax is the largest probability the calibration batches happened to produce (0.84 here),
    and a sharper attention at deployment clips. Softmax is bounded by 1, so its amax is 1
    (scale 1/127) with no calibration: TensorRT's INT8 fused-MHA plugins take probabilities at
    1/127 by default, and modelopt's exporter fixes the FP8 softmax scale the same way.
This pass, run after qdq_insert and quantizer_unify, removes the quantizers on the score path
and fixes the softmax-output quantizer at amax 1. It touches only attention whose second matmul
is already quantized: a matmul the quant config keeps float stays float.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from bevcc import Pass, PassResult
from bevcc.quant.quantizer import TensorQuantizer
from bevcc.trt.fx_ops import rule_for_fx
from bevcc_swin.options import AttentionQdqOptions, attention_report

_MATMULS = {torch.matmul, torch.bmm, operator.matmul}
_SOFTMAX_FUNCTIONS = {torch.softmax, F.softmax}
# What may lie between the first matmul and the softmax: shape changes and Adds (bias, mask;
# an Add is what TensorRT's rules call a join: bevcc.trt.rules, spelt in FX by bevcc.trt.fx_ops).
_SCORE_PATH_METHODS = {"view", "reshape", "unsqueeze", "contiguous"}


class AttentionQdq(Pass):
    name = "attention_qdq"
    summary = (
        "Make attention TensorRT-MHA-ready: float scores between Q.K^T and Softmax, "
        "softmax output quantized with a fixed amax of 1 (FX; after quantizer_unify)."
    )
    ir = "fx"
    quantizes = True
    Options = AttentionQdqOptions

    def report(self, stats: dict) -> list[str]:
        return [attention_report(stats, self.options.softmax_amax)]

    def call(self, ir) -> PassResult:
        graph, module = ir.graph, ir.module
        modules = dict(module.named_modules())
        callers: dict[str, int] = {}
        for node in graph.nodes:
            if _activation_quantizer(node, modules):
                callers[node.target] = callers.get(node.target, 0) + 1
        attention = removed = fixed = 0
        visited: set[fx.Node] = set()
        for softmax in [n for n in graph.nodes if _is_softmax(n, modules)]:
            probs = _quantizer_into_matmul(softmax, modules)
            if probs is None:
                continue  # not attention, or its second matmul is kept float
            score_quantizers = _score_path_quantizers(softmax.args[0], modules, visited)
            if score_quantizers is None:
                continue  # the softmax input does not come from a matmul
            attention += 1
            if self.options.float_scores:
                for node in score_quantizers:
                    node.replace_all_uses_with(node.args[0])
                    graph.erase_node(node)
                    callers[node.target] -= 1
                    removed += 1
            if self.options.softmax_amax is not None:
                fixed += _fix_amax(ir, probs, modules, callers, self.options.softmax_amax)
        changed = bool(removed or fixed)
        if changed:
            module.delete_all_unused_submodules()
            module.recompile()
        return PassResult(
            ir,
            modified=changed,
            stats={"attention": attention, "score_quantizers": removed, "softmax_fixed": fixed},
        )


def _activation_quantizer(node: fx.Node, modules: dict) -> bool:
    module = modules.get(node.target) if node.op == "call_module" else None
    return isinstance(module, TensorQuantizer) and module.axis is None


def _is_matmul(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _MATMULS) or (
        node.op == "call_method" and node.target in ("matmul", "bmm")
    )


def _is_softmax(node: fx.Node, modules: dict) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), nn.Softmax)
    return (node.op == "call_function" and node.target in _SOFTMAX_FUNCTIONS) or (
        node.op == "call_method" and node.target == "softmax"
    )


def _quantizer_into_matmul(softmax: fx.Node, modules: dict) -> fx.Node | None:
    """The quantizer call between the softmax and the attn.V matmul (None: no such pattern)."""
    users = list(softmax.users)
    if len(users) != 1 or not _activation_quantizer(users[0], modules):
        return None
    quantizer = users[0]
    if not quantizer.users or not all(_is_matmul(u) for u in quantizer.users):
        return None
    return quantizer


def _score_path_quantizers(start: fx.Node, modules: dict, visited: set) -> list[fx.Node] | None:
    """Quantizer calls feeding the Adds between a matmul and the softmax input `start`, or None
    when no matmul is reached through shape changes and Adds alone. Each node is walked once."""
    found: list[fx.Node] = []
    stack, reached_matmul = [start], False
    while stack:
        node = stack.pop()
        if node in visited:
            continue
        visited.add(node)
        if _is_matmul(node):
            reached_matmul = True
            continue
        rule = rule_for_fx(node, modules)
        if rule is not None and rule.join:
            for source in node.all_input_nodes:
                if _activation_quantizer(source, modules):
                    found.append(source)
                    stack.extend(source.all_input_nodes)
                else:
                    stack.append(source)
        elif node.op == "call_method" and node.target in _SCORE_PATH_METHODS:
            stack.append(node.args[0])
        elif _activation_quantizer(node, modules):
            stack.extend(node.all_input_nodes)
    # One quantizer call may feed two Adds (quantizer_unify merges calls on one tensor).
    return list(dict.fromkeys(found)) if reached_matmul else None


def _fix_amax(ir, probs: fx.Node, modules: dict, callers: dict, amax: float) -> int:
    """Give the softmax-output quantizer call the fixed amax; 1 if that changed anything."""
    quantizer = modules[probs.target]
    if callers[probs.target] > 1:  # shared with other tensors: this edge gets its own
        fresh = TensorQuantizer(
            calibrator=quantizer.calibrator_name, percentile=quantizer.percentile
        )
        name = f"{probs.name}_softmax"
        ir.module.add_submodule(name, fresh)
        callers[probs.target] -= 1
        probs.target, modules[name], callers[name] = name, fresh, 1
        quantizer = fresh
    elif quantizer.amax is not None and float(quantizer.amax) == amax:
        return 0
    quantizer.set_amax(amax)
    return 1
