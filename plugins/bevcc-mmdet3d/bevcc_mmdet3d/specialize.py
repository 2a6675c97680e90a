"""Specialize a model's forward to its example inputs, so bevcc traces and exports it.

mmdet3d forwards take more than tensors (`SparseEncoder.forward(voxel_features, coors,
batch_size)`), cast inputs the example already has in that dtype (`coors.int()`) and compute
reshapes from runtime shapes (`N, C, D, H, W = x.shape; x.view(N, C * D, H, W)`). None of that
is a tensor op a deployed file has. `specialize` traces the model once with bevcc's trace rules:
- non-tensor inputs become constants (torch.fx concrete_args), tensor inputs stay named inputs;
- a shape value (x.shape, x.size(), x.dim() and int arithmetic on them) becomes a constant when
  it is the same on the example and on a probe with fewer rows (every tensor input's first axis
  halved: fewer voxels); a value that changes with the row count (the voxel count) stays live;
- a cast to the dtype the value already has (on both runs) is dropped.
The result is a GraphModule with one placeholder per tensor input, which bevcc traces as usual.
"""

from __future__ import annotations

import inspect
import operator

import torch
from torch import fx

from bevcc.errors import InputError
from bevcc.ir.fx import FxIR

_CASTS = {"int": torch.int32, "long": torch.int64, "float": torch.float32, "half": torch.float16}
_SHAPE_OPS = {operator.getitem, operator.mul, operator.add, operator.sub, operator.floordiv,
              getattr, len}


def specialize(module: torch.nn.Module, example_inputs: tuple, rules=None):
    """(GraphModule with tensor-only named inputs, the tensor example inputs)."""
    if rules is None:
        from bevcc.plugins import get_registry

        rules = get_registry().trace_rules()
    names = list(inspect.signature(module.forward).parameters)
    if len(example_inputs) > len(names):
        raise InputError(f"{type(module).__name__}.forward takes {len(names)} inputs "
                         f"({', '.join(names)}), got {len(example_inputs)} example inputs")
    concrete = {n: v for n, v in zip(names, example_inputs) if not isinstance(v, torch.Tensor)}
    tensors = tuple(v for v in example_inputs if isinstance(v, torch.Tensor))
    graph_module = FxIR.trace(module, None, rules, concrete_args=concrete or None).module
    _drop_concrete_placeholders(graph_module.graph, concrete)
    graph_module.recompile()
    values = _record(graph_module, tensors)
    probe = _record(graph_module, _fewer_rows(tensors)) if values is not None else None
    if values is not None and probe is not None:
        _fold(graph_module.graph, values, probe)
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    return graph_module, tensors


def _drop_concrete_placeholders(graph: fx.Graph, concrete: dict) -> None:
    """fx keeps a placeholder and a `torch._assert(arg == value)` per concrete arg; the value is
    a constant now, so both go (the inputs of the result are the tensors only)."""
    graph._codegen = fx.graph.CodeGen()  # plain positional forward, no pytree flattening
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch._assert:
            condition = node.args[0]
            graph.erase_node(node)
            if isinstance(condition, fx.Node) and not condition.users:
                graph.erase_node(condition)
    for node in list(graph.nodes):
        if node.op == "placeholder" and not node.users and \
                node.target.rsplit("_", 1)[0] in concrete:
            graph.erase_node(node)


def _record(graph_module: fx.GraphModule, inputs: tuple) -> dict | None:
    """Every node's value on `inputs`, or None if the model cannot run on them."""
    seen: dict[fx.Node, object] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            seen[n] = result = super().run_node(n)
            return result

    try:
        with torch.no_grad():
            Recorder(graph_module).run(*inputs)
    except Exception:  # noqa: BLE001 - a probe the model rejects just folds nothing
        return None
    return {n: _static(v) for n, v in seen.items()}


def _static(value):
    """Shape-like Python values are kept for comparison; tensor dtypes for the cast rule."""
    if isinstance(value, torch.Tensor):
        return value.dtype
    if isinstance(value, (int, torch.Size)) or (
            isinstance(value, tuple) and all(isinstance(v, int) for v in value)):
        return value
    return None


def _fewer_rows(tensors: tuple) -> tuple:
    return tuple(t[: max(1, t.shape[0] // 2)] if t.dim() and t.shape[0] > 1 else t
                 for t in tensors)


def _fold(graph: fx.Graph, values: dict, probe: dict) -> None:
    for node in list(graph.nodes):
        value = values.get(node)
        if node.op == "call_method" and node.target in _CASTS and not node.kwargs and \
                len(node.args) == 1 and isinstance(node.args[0], fx.Node) and \
                values.get(node.args[0]) == probe.get(node.args[0]) == _CASTS[node.target]:
            node.replace_all_uses_with(node.args[0])
        elif _is_shape_op(node) and isinstance(value, int) and not isinstance(value, bool) and \
                probe.get(node) == value:
            node.replace_all_uses_with(value)


def _is_shape_op(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in ("size", "dim")
    return node.op == "call_function" and node.target in _SHAPE_OPS
