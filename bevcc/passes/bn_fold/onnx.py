"""onnx `bn_fold`: fold inference BatchNormalization into the Conv/ConvTranspose/Gemm feeding it:
any layer of bevcc.trt.rules with a bias input, folded by its weight layout (bevcc.trt.weights)."""

from __future__ import annotations

from collections import Counter

import onnx_graphsurgeon as gs

from bevcc.ir.onnx import OnnxIR
from bevcc.passes.bn_fold import ONNX
from bevcc.passes.bn_fold import _math as fm
from bevcc.passes.bn_fold._report import BnFoldReporting
from bevcc.pm.pass_base import PassResult
from bevcc.trt.rules import OpRule, rule_for_attrs
from bevcc.trt.weights import layout_of, out_channels


class BatchNormFoldOnnx(BnFoldReporting, declaration=ONNX):
    def call(self, ir: OnnxIR) -> PassResult:
        graph = ir.graph
        outputs = {id(t) for t in graph.outputs}
        folded: Counter[str] = Counter()
        skipped: list[dict] = []
        removed: set[int] = set()
        for bn in list(graph.nodes):
            if bn.op != "BatchNormalization" or not bn.inputs:
                continue
            x = bn.inputs[0]
            producer = x.inputs[0] if len(x.inputs) == 1 else None
            rule = rule_for_attrs(producer.op, producer.attrs) if producer is not None else None
            if rule is None or rule.bias is None:  # no layer with a bias to take the fold
                continue
            reason = _skip_reason(bn, producer, rule, x, outputs)
            if reason:
                skipped.append({"batchnorm": bn.name, "into": producer.name, "reason": reason})
                continue
            _fold(graph, bn, producer, rule)
            producer.outputs[0] = bn.outputs[0]  # downstream keeps its tensor names
            param_identities = [t.inputs[0] for t in bn.inputs[1:5] if t.inputs]
            bn.inputs.clear()
            bn.outputs.clear()
            removed.add(id(bn))
            # Identity nodes that only fed this BN's parameters die with it; the rest of the
            # graph is left as it was (dead code elsewhere is `cleanup`'s business).
            for identity in param_identities:
                if not _used(identity, outputs):
                    identity.inputs.clear()  # no dangling consumer left on the initializer
                    identity.outputs.clear()
                    removed.add(id(identity))
            folded[f"{producer.op}+BatchNormalization"] += 1
        if removed:
            graph.nodes = [n for n in graph.nodes if id(n) not in removed]
        return PassResult(
            ir,
            modified=bool(removed),
            stats={"folded": dict(sorted(folded.items())), "skipped": skipped},
        )


def _skip_reason(
    bn: gs.Node, producer: gs.Node, rule: OpRule, x: gs.Tensor, outputs: set[int]
) -> str | None:
    if bn.attrs.get("training_mode", 0):
        return "BatchNormalization is in training mode"
    if any(t.outputs or id(t) in outputs for t in bn.outputs[1:]):
        return "BatchNormalization's running-statistics outputs are used"
    if any(_constant_values(t) is None for t in bn.inputs[1:5]):
        return "BatchNormalization parameters are not initializers"
    if len(x.outputs) > 1 or id(x) in outputs:
        return f"the unfolded output of {producer.name} is also used elsewhere"
    params = [t for t in producer.inputs[1:] if t.name]
    if not all(isinstance(t, gs.Constant) for t in params):
        return f"{producer.name} has non-constant weights"
    if any(len(t.outputs) > 1 for t in params):
        return f"a weight of {producer.name} is shared with another node"
    if _beta(producer) == 0.0:
        return f"{producer.op} with beta=0 cannot take the folded bias"
    channels = out_channels(rule, producer.attrs, producer.inputs[rule.weight].values.shape)
    bn_channels = _constant_values(bn.inputs[1]).shape[0]
    if channels != bn_channels:
        return f"BatchNormalization has {bn_channels} channels, {producer.name} outputs {channels}"
    return None


def _constant_values(tensor: gs.Tensor):
    """The value of an initializer, also behind Identity nodes (torch's exporter turns equal
    initializers, e.g. a fresh BN's weight and running_var, into one plus an Identity)."""
    seen = 0
    while not isinstance(tensor, gs.Constant) and len(tensor.inputs) == 1 and seen < 8:
        producer = tensor.inputs[0]
        if producer.op != "Identity":
            return None
        tensor, seen = producer.inputs[0], seen + 1
    return tensor.values if isinstance(tensor, gs.Constant) else None


def _used(node: gs.Node, outputs: set[int]) -> bool:
    return any(t.outputs or id(t) in outputs for t in node.outputs)


def _fold(graph: gs.Graph, bn: gs.Node, producer: gs.Node, rule: OpRule) -> None:
    gamma, beta, mean, var = (_constant_values(t) for t in bn.inputs[1:5])
    scale, shift = fm.scale_shift(mean, var, float(bn.attrs.get("epsilon", 1e-5)), gamma, beta)
    weight = producer.inputs[rule.weight]
    dtype = weight.values.dtype
    has_bias = len(producer.inputs) > rule.bias and producer.inputs[rule.bias].name
    bias = producer.inputs[rule.bias] if has_bias else None
    layout = layout_of(rule, producer.attrs)
    group = int(producer.attrs.get("group", 1))
    weight.values = fm.fold_weight(weight.values, scale, layout, group).astype(dtype)
    # ONNX scales the bias by `beta` where the op has one (Gemm: y = alpha*A*B + beta*C), so
    # scale*y + shift needs C' = scale*C + shift/beta
    new_bias = fm.fold_bias(
        bias.values if bias is not None else None, scale, shift / _beta(producer)
    )
    if bias is not None:
        bias.values = new_bias.astype(dtype)
    else:
        constant = gs.Constant(f"{weight.name}.bn_folded_bias", new_bias.astype(dtype))
        while len(producer.inputs) <= rule.bias:  # the bias slot (and any before it) left out
            producer.inputs.append(gs.Variable.empty())
        producer.inputs[rule.bias] = constant


def _beta(producer: gs.Node) -> float:
    return float(producer.attrs.get("beta", 1.0))
