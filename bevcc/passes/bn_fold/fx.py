"""fx `bn_fold`: fold inference-mode BatchNorm into the conv / deconv / linear that feeds it."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from bevcc.device import device_of
from bevcc.ir.fx import FxIR
from bevcc.passes.bn_fold import FX, sparse
from bevcc.passes.bn_fold import _math as fm
from bevcc.passes.bn_fold._report import BnFoldReporting
from bevcc.pm.pass_base import PassResult
from bevcc.sparse.layers import weight_layout


@dataclass(frozen=True)
class Foldable:
    """How to fold into one producer type: where its output channels sit in the weight."""

    module_type: type
    layout: str  # "out_first" | "transposed" (see bn_fold_math.fold_weight)
    needs_2d_output: bool = False  # Linear + BatchNorm1d: BN's channel axis must be Linear's last


BUILTIN_FOLDABLES = (
    Foldable(nn.Conv1d, "out_first"),
    Foldable(nn.Conv2d, "out_first"),
    Foldable(nn.Conv3d, "out_first"),
    Foldable(nn.ConvTranspose1d, "transposed"),
    Foldable(nn.ConvTranspose2d, "transposed"),
    Foldable(nn.ConvTranspose3d, "transposed"),
    Foldable(nn.Linear, "out_first", needs_2d_output=True),
)


class BatchNormFoldFx(BnFoldReporting, declaration=FX):
    def call(self, ir: FxIR) -> PassResult:
        graph, modules = ir.graph, dict(ir.module.named_modules())
        registered = getattr(self.context.registry, "foldables", [])
        foldables = BUILTIN_FOLDABLES + tuple(Foldable(*e.obj) for e in registered)
        calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
        owners = Counter(id(p) for m in modules.values() for p in m.parameters(recurse=False))
        folded: Counter[str] = Counter()
        skipped: list[dict] = []
        for bn_node in list(graph.nodes):
            bn = modules.get(bn_node.target) if bn_node.op == "call_module" else None
            if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn_node.args:
                continue
            sparse_match = sparse.match(bn_node, modules)
            if sparse_match is not None:
                producer, features = sparse_match
                conv = modules[producer.target]
                spec = Foldable(type(conv), weight_layout(conv))
                reason = _batchnorm_reason(
                    bn_node, producer, bn, conv, calls, owners
                ) or sparse.usage_reason(bn_node, producer, features, conv)
            else:
                producer = bn_node.args[0]
                conv = (
                    modules.get(producer.target)
                    if getattr(producer, "op", None) == "call_module"
                    else None
                )
                spec = next((f for f in foldables if isinstance(conv, f.module_type)), None)
                if spec is None:
                    continue
                reason = _batchnorm_reason(
                    bn_node, producer, bn, conv, calls, owners
                ) or _dense_usage_reason(bn_node, producer, spec)
            if reason:
                skipped.append(
                    {"batchnorm": bn_node.target, "into": producer.target, "reason": reason}
                )
                if bn.training:  # likely a forgotten model.eval(): say so, not only in stats
                    warnings.warn(f"bn_fold: {bn_node.target} not folded: {reason}", stacklevel=2)
                continue
            folded_bias = _fold(conv, bn, spec)
            if sparse_match is not None:
                sparse.rewrite(
                    ir,
                    bn_node,
                    producer,
                    features,
                    conv,
                    folded_bias,
                    sparse.bias_outside(conv, self.options.sparse_bias, device_of(self.context)),
                )
            else:
                _set_bias(conv, folded_bias)
                bn_node.replace_all_uses_with(producer)
                graph.erase_node(bn_node)
                ir.module.delete_submodule(bn_node.target)
            folded[f"{type(conv).__name__}+{type(bn).__name__}"] += 1
        if folded:
            ir.module.recompile()
        return PassResult(
            ir,
            modified=bool(folded),
            stats={"folded": dict(sorted(folded.items())), "skipped": skipped},
        )


def _batchnorm_reason(bn_node, producer, bn, conv, calls, owners) -> str | None:
    """Reasons that hold for every pattern: BN state, call sites, shared weights, channels."""
    if bn.training:
        return "BatchNorm is in training mode; call model.eval() before compiling"
    if bn.running_mean is None or bn.running_var is None:
        return "BatchNorm has no running statistics (track_running_stats=False)"
    if len(bn_node.args) != 1 or bn_node.kwargs:
        return "BatchNorm is called with extra arguments"
    if calls[producer.target] > 1 or calls[bn_node.target] > 1:
        return "the layer is called more than once (its weights serve several places)"
    if any(owners[id(p)] > 1 for p in conv.parameters(recurse=False)):
        return f"a parameter of {producer.target} is shared with another module"
    channels = conv.out_features if isinstance(conv, nn.Linear) else conv.out_channels
    if bn.num_features != channels:
        return f"BatchNorm has {bn.num_features} channels, {producer.target} outputs {channels}"
    return None


def _dense_usage_reason(bn_node, producer, spec) -> str | None:
    if len(producer.users) > 1:
        others = sorted(u.name for u in producer.users if u is not bn_node)
        return f"the unfolded output of {producer.target} is also used by {', '.join(others)}"
    if spec.needs_2d_output:
        meta = producer.meta.get("tensor_meta")
        if meta is None or len(meta.shape) != 2:
            return "Linear output is not known to be 2-D, so BatchNorm1d's channels may differ"
    return None


def _fold(conv: nn.Module, bn, spec: Foldable) -> torch.Tensor:
    """Scale the weight in place; return the folded bias (the caller decides where it lives)."""

    def array(t):
        return t.detach().cpu().double().numpy()

    scale, shift = fm.scale_shift(
        array(bn.running_mean),
        array(bn.running_var),
        bn.eps,
        array(bn.weight) if bn.affine else None,
        array(bn.bias) if bn.affine else None,
    )
    weight = conv.weight
    folded_w = fm.fold_weight(array(weight), scale, spec.layout, getattr(conv, "groups", 1))
    folded_b = fm.fold_bias(array(conv.bias) if conv.bias is not None else None, scale, shift)
    with torch.no_grad():
        weight.copy_(torch.from_numpy(folded_w).to(weight.dtype))
    return torch.from_numpy(folded_b).to(device=weight.device, dtype=weight.dtype)


def _set_bias(conv: nn.Module, bias: torch.Tensor) -> None:
    with torch.no_grad():
        if conv.bias is None:
            conv.bias = nn.Parameter(bias)
        else:
            conv.bias.copy_(bias)
