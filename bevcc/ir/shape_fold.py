"""Fold the shape values a traced graph's example inputs fix; keep the ones that vary with them.

A shape value is read from a tensor's metadata (`getattr(x, "shape")`, `x.size()`, `x.dim()`,
`x.numel()`, any attribute whose value is an int, float or tuple of them) or computed from such
values only (indexing, arithmetic, comparisons). A value computed from tensor data (`x.sum()`,
`.item()`) never is, so it is never folded, whatever it happens to equal.

The graph runs on the example and on a probe with every first axis above 1 halved (fewer voxels,
a smaller batch). A shape value equal on both is folded to a constant; one that differs depends
on the row count and stays a live graph value. When no first axis can be halved (batch 1), or
the probe does not run (the model needs exactly this count), every shape value folds.
"""

from __future__ import annotations

import contextlib
import operator
from dataclasses import dataclass

import torch
from torch import fx

_SOURCE_METHODS = {"size", "dim", "numel", "nelement"}
_DERIVED_FUNCTIONS = {
    operator.getitem,
    operator.add,
    operator.sub,
    operator.mul,
    operator.floordiv,
    operator.truediv,
    operator.mod,
    operator.neg,
    operator.pow,
    operator.eq,
    operator.ne,
    operator.lt,
    operator.le,
    operator.gt,
    operator.ge,
    operator.and_,
    operator.or_,
    operator.not_,
}
_CASTS = {
    "int": torch.int32,
    "long": torch.int64,
    "float": torch.float32,
    "half": torch.float16,
    "double": torch.float64,
    "bool": torch.bool,
}
_NOT_SHAPE = object()


@dataclass
class FoldResult:
    fixed: list[tuple[int | None, ...]]  # per example tensor; see Specialized.fixed_input_shapes
    folded: int  # shape nodes replaced by constants
    casts: int  # no-op input casts dropped


def fold_shapes(graph_module: fx.GraphModule, inputs: tuple[torch.Tensor, ...]) -> FoldResult:
    """Rewrite `graph_module` in place; only nodes this made dead are erased (dead code the
    user wrote stays for the dce pass to report)."""
    graph = graph_module.graph
    watch = {n for n in graph.nodes if _may_be_shape(n)}
    values = _run(graph_module, inputs, watch) if watch else {}
    halved = _resized(inputs, lambda n: n > 1, lambda t: t[: max(1, t.shape[0] // 2)])
    probe = _run(graph_module, halved, watch) if halved is not None else None
    doubled = _resized(inputs, lambda n: n == 1, lambda t: torch.cat([t, t]))
    grown = _run(graph_module, doubled, watch) if doubled is not None else None

    shapes = _shape_nodes(graph, values or {})
    folded = [n for n in shapes if probe is None or probe.get(n, _NOT_SHAPE) == values[n]]
    depends = _input_dependent(graph)
    fixed = _fixed_dims(
        inputs, probe is not None, grown, folded, values or {}, any(n in depends for n in folded)
    )
    for node in folded:
        node.replace_all_uses_with(values[node])
    casts = _drop_noop_casts(graph, inputs)
    erased = _erase_unused(graph, set(shapes) | casts)
    graph_module.recompile()
    return FoldResult(fixed, erased - len(casts), len(casts))


def _may_be_shape(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _SOURCE_METHODS
    return node.op == "call_function" and (
        node.target is getattr or node.target in _DERIVED_FUNCTIONS
    )


def _shape_nodes(graph: fx.Graph, values: dict) -> list[fx.Node]:
    """Nodes whose value is shape-like and computed from tensor metadata only, in graph order."""
    shapes: list[fx.Node] = []
    seen: set[fx.Node] = set()
    for node in graph.nodes:
        if values.get(node, _NOT_SHAPE) is _NOT_SHAPE:
            continue
        source = node.target is getattr or node.op == "call_method"
        if source or all(arg in seen for arg in node.all_input_nodes):
            shapes.append(node)
            seen.add(node)
    return shapes


def _shape_value(value):
    """The value as a graph constant if it is shape-like (torch.Size becomes a tuple)."""
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, (bool, int, float)) for v in value):
        return list(value) if isinstance(value, list) else tuple(value)
    return _NOT_SHAPE


def _run(graph_module: fx.GraphModule, inputs: tuple, watch: set) -> dict | None:
    """The shape-like values of `watch` nodes on `inputs`, or None if the graph rejects them."""
    seen: dict[fx.Node, object] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if n in watch:
                seen[n] = _shape_value(result)
            return result

    try:
        with torch.no_grad(), _buffers_kept(graph_module):
            Recorder(graph_module).run(*inputs)
    except Exception:  # noqa: BLE001 - a probe the model rejects means that dimension is fixed
        return None
    return seen


@contextlib.contextmanager
def _buffers_kept(module: torch.nn.Module):
    """Probes must not move a training-mode BatchNorm's running statistics."""
    if not any(m.training for m in module.modules()):
        yield
        return
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _resized(inputs: tuple, which, resize) -> tuple | None:
    """Inputs with `resize` applied where the first axis passes `which`; None if none does."""
    hit = [t.dim() > 0 and which(t.shape[0]) for t in inputs]
    if not any(hit):
        return None
    return tuple(resize(t) if h else t for t, h in zip(inputs, hit, strict=True))


def _input_dependent(graph: fx.Graph) -> set[fx.Node]:
    depends: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(a in depends for a in node.all_input_nodes):
            depends.add(node)
    return depends


def _fixed_dims(
    inputs, halved_ran: bool, grown: dict | None, folded: list, values: dict, rest_fixed: bool
) -> list[tuple[int | None, ...]]:
    """Per input: its first axis is free when a probe with another count ran and changed no
    folded value; the other axes are the example's once anything read from the inputs folded."""
    grown_ok = grown is not None and all(grown.get(n, _NOT_SHAPE) == values[n] for n in folded)
    fixed = []
    for t in inputs:
        if t.dim() == 0:
            fixed.append(())
            continue
        count = t.shape[0]
        free = (count > 1 and halved_ran) or (count == 1 and grown_ok)
        rest = tuple(t.shape[1:]) if rest_fixed else (None,) * (t.dim() - 1)
        fixed.append((None if free else count, *rest))
    return fixed


def _cast_dtype(node: fx.Node) -> torch.dtype | None:
    if node.target in _CASTS and len(node.args) == 1 and not node.kwargs:
        return _CASTS[node.target]
    if node.target in ("to", "type"):
        dtype = (
            node.args[1]
            if len(node.args) == 2 and not node.kwargs
            else node.kwargs.get("dtype")
            if len(node.args) == 1 and len(node.kwargs) == 1
            else None
        )
        return dtype if isinstance(dtype, torch.dtype) else None
    return None


def _drop_noop_casts(graph: fx.Graph, inputs: tuple) -> set[fx.Node]:
    """A cast of an input to the dtype the example gives it (`coors.int()` on int32 coordinates):
    the input's dtype is part of what the graph is specialized to."""
    dtypes = dict(
        zip(
            [n for n in graph.nodes if n.op == "placeholder"],
            [t.dtype for t in inputs],
            strict=True,
        )
    )
    dropped = set()
    for node in graph.nodes:
        if (
            node.op == "call_method"
            and node.args
            and node.args[0] in dtypes
            and _cast_dtype(node) == dtypes[node.args[0]]
        ):
            node.replace_all_uses_with(node.args[0])
            dropped.add(node)
    return dropped


def _erase_unused(graph: fx.Graph, candidates: set[fx.Node]) -> int:
    erased = 0
    for node in reversed(list(graph.nodes)):
        if node in candidates and not node.users:
            graph.erase_node(node)
            erased += 1
    return erased
