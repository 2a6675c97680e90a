"""The spconv side of fx `bn_fold`: BatchNorm1d over a sparse conv's features.

Patterns (spconv 2.x weights are [Cout, k0, k1, k2, Cin], i.e. layout out_first):
  features:  %c = conv(x); %f = getattr(%c, "features"); %b = bn(%f); ... replace_feature(%c, ...)
             (what SparseSequential unrolls to, and how hand-written sparse basic blocks read)
  direct:    %c = conv(x); %b = SparseBatchNorm(%c)
Where the folded bias goes is the `sparse_bias` option: inside the conv (GPU), or outside as a
SparseConvBias module in the BatchNorm's place, because spconv's CPU kernels assert on an
eval-mode conv bias.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from bevcc.sparse.conv_bias import SparseConvBias
from bevcc.sparse.layers import is_sparse_conv

_HARMLESS_ATTRS = {
    "indices",
    "spatial_shape",
    "batch_size",
    "indice_dict",
    "grid",
    "voxel_num",
    "benchmark",
    "benchmark_record",
    "thrust_allocator",
    "_timer",
}


def match(bn_node: fx.Node, modules: dict) -> tuple[fx.Node, fx.Node | None] | None:
    """(conv node, features node or None) if `bn_node` reads a sparse conv's output."""
    arg = bn_node.args[0]
    if not isinstance(arg, fx.Node):
        return None
    if arg.op == "call_module" and is_sparse_conv(modules.get(arg.target)):
        return arg, None
    if arg.op == "call_function" and arg.target is getattr and arg.args[1:] == ("features",):
        conv_node = arg.args[0]
        if (
            isinstance(conv_node, fx.Node)
            and conv_node.op == "call_module"
            and is_sparse_conv(modules.get(conv_node.target))
        ):
            return conv_node, arg
    return None


def usage_reason(
    bn_node: fx.Node, conv_node: fx.Node, features: fx.Node | None, conv
) -> str | None:
    """Why folding would change an observable value (or is unsupported), else None."""
    if getattr(conv, "groups", 1) != 1:
        return f"{conv_node.target} has groups={conv.groups}"
    others = [
        u
        for u in conv_node.users
        if u is not (features or bn_node) and not _keeps_features_out(u, conv_node)
    ]
    if features is not None and len(features.users) > 1:
        others += [u for u in features.users if u is not bn_node]
    if others:
        names = ", ".join(sorted(u.name for u in others))
        return f"the unfolded features of {conv_node.target} are also used by {names}"
    return None


def _keeps_features_out(user: fx.Node, conv_node: fx.Node) -> bool:
    """replace_feature(conv, new) and conv.indices & co. never read the conv's features."""
    if (
        user.op == "call_method"
        and user.target == "replace_feature"
        and user.args[0] is conv_node
        and conv_node not in user.args[1:]
    ):
        return True
    return user.op == "call_function" and user.target is getattr and user.args[1] in _HARMLESS_ATTRS


def bias_outside(conv, mode: str, device: str = "cpu") -> bool:
    """`auto`: inside when the compile runs the model on CUDA (`device`, bevcc/device.py) or the
    conv already lives there; outside on the CPU, whose spconv kernels reject the bias."""
    if mode == "auto":
        return device == "cpu" and conv.weight.device.type == "cpu"
    return mode == "outside"


def rewrite(
    ir,
    bn_node: fx.Node,
    conv_node: fx.Node,
    features: fx.Node | None,
    conv,
    folded_bias: torch.Tensor,
    outside: bool,
) -> None:
    """Graph surgery after the weights are folded; `folded_bias` includes any old conv bias."""
    graph, module = ir.graph, ir.module
    if outside:
        conv.bias = None
        # The BN's node and name stay; only the module behind them changes.
        module.delete_submodule(bn_node.target)
        module.add_submodule(bn_node.target, SparseConvBias(folded_bias, conv_node.target))
        return
    if conv.bias is None:
        conv.bias = nn.Parameter(folded_bias)
    else:
        with torch.no_grad():
            conv.bias.copy_(folded_bias)
    bn_node.replace_all_uses_with(features if features is not None else conv_node)
    graph.erase_node(bn_node)
    module.delete_submodule(bn_node.target)
    if features is not None:
        _drop_identity_replace(graph, conv_node, features)


def _drop_identity_replace(graph: fx.Graph, conv_node: fx.Node, features: fx.Node) -> None:
    """replace_feature(conv, conv.features) is conv itself: keep the graph as simple as before."""
    for user in list(features.users):
        if (
            user.op == "call_method"
            and user.target == "replace_feature"
            and user.args == (conv_node, features)
            and not user.kwargs
        ):
            user.replace_all_uses_with(conv_node)
            graph.erase_node(user)
    if not features.users:
        graph.erase_node(features)
