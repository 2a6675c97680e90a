"""Specialize a PyTorch model to its example inputs, so its graph holds only deployable tensor ops.

User models compute with more than tensors: mmdet3d's `SparseEncoder.forward(voxel_features,
coors, batch_size)` takes an int, OpenPCDet's backbones take a `batch_dict`, mmdet's FPN takes a
tuple of feature maps, and lidar encoders end in `N, C, D, H, W = x.shape; x.view(N, C * D, H, W)`
while camera necks pass `x.shape[-2:]` to F.interpolate. A deployed file has none of that. The
frontend calls `specialize` whenever it knows example inputs; it traces the model once:

- every tensor in the example inputs (also inside lists, tuples and dicts) becomes a named graph
  input; everything else (ints, None, strings, numpy arrays) is a constant of the graph. A tensor
  input is named by its parameter, a list/tuple element `param_i`, a dict entry by its key (an
  OpenPCDet `batch_dict` gives inputs `voxel_features`, `voxel_coords`);
- shape values (x.shape, x.size(), x.dim(), x.numel() and arithmetic, indexing and comparisons on
  them) fold to constants when the example fixes them; the ones that change with the number of
  rows (the voxel count) stay live. Which is which is measured, not guessed: shape_fold.py runs
  the graph on the example and on a probe with every first axis halved;
- a cast of an input to the dtype it already has (`coors.int()` on int32 coordinates) is dropped.

The result records which input dimensions the specialized graph fixes (`fixed_input_shapes`).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx
from torch.utils import _pytree as pytree

from bevcc.errors import InputError
from bevcc.ir.fx import _ScopedTracer, _trace_error
from bevcc.ir.input_names import bind_inputs, leaf_name, unique_name
from bevcc.ir.shape_fold import fold_shapes
from bevcc.ir.trace_rules import TraceRules

__all__ = ["Specialized", "specialize"]

# GraphModule.meta key: the fixed dims of an already specialized module, kept when it is
# specialized again (a plugin that specializes in its model builder, then the frontend).
FIXED_SHAPES_META = "bevcc_fixed_input_shapes"


@dataclass
class Specialized:
    """A traced module whose inputs are the example's tensors, in `example_inputs` order.

    `fixed_input_shapes` maps every graph input (placeholder name) to one entry per dimension:
    the int the specialized graph requires there, or None where any size runs. Only the first
    axis (batch or voxel count) is probed, so it is None when the graph ran with a different
    count there (halved when above 1, doubled when 1) and no folded constant changed with it. Every
    other dimension is the example's as soon as one shape value read from the inputs' computation
    was folded (bevcc does not track which dimension a folded value came from), and None when the
    graph read none.
    `folded`: how many shape values became constants; `casts`: how many no-op casts were dropped.
    """

    module: fx.GraphModule
    example_inputs: tuple[torch.Tensor, ...]
    fixed_input_shapes: dict[str, tuple[int | None, ...]]
    folded: int = 0
    casts: int = 0


def specialize(
    module: torch.nn.Module,
    example_inputs,
    rules: TraceRules | None = None,
) -> Specialized:
    """Trace a copy of `module` specialized to `example_inputs` (a tuple of forward's positional
    arguments); the caller's module is never touched."""
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"expected a torch.nn.Module to specialize, got {type(module).__name__}")
    if not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    arguments = bind_inputs(module, tuple(example_inputs))
    owner = copy.deepcopy(module)
    tracer = _ExampleTracer(TraceRules.coerce(rules), arguments)
    try:
        graph = tracer.trace(owner)
    except Exception as exc:
        raise _trace_error(owner, exc) from exc
    graph._tracer_cls = _ScopedTracer  # unpickling re-traces the code with this class
    _positional_leaf_calls(graph, tracer.rules)
    graph_module = fx.GraphModule(tracer.root, graph, type(module).__name__)
    names = [n.name for n in graph.nodes if n.op == "placeholder"]
    tensors = tuple(tracer.tensors)
    result = fold_shapes(graph_module, tensors)
    fixed = _merge(
        dict(zip(names, result.fixed, strict=True)),
        getattr(module, "meta", {}).get(FIXED_SHAPES_META),
    )
    graph_module.meta[FIXED_SHAPES_META] = fixed
    return Specialized(graph_module, tensors, fixed, result.folded, result.casts)


class _ExampleTracer(_ScopedTracer):
    """Feeds forward the example's structure: a placeholder for every tensor, constants else."""

    def __init__(self, rules: TraceRules | None = None, arguments=None):
        super().__init__(rules or ())
        self.arguments = arguments
        self.tensors: list[torch.Tensor] = []

    def create_args_for_root(self, root_fn, is_module, concrete_args=None):
        if self.arguments is None:  # unpickling: trace the generated code as it is
            return super().create_args_for_root(root_fn, is_module, concrete_args)
        taken: set[str] = set()
        args = [self.root] if is_module else []
        for name, value in self.arguments:
            leaves, spec = pytree.tree_flatten_with_path(value)
            replaced = []
            for path, leaf in leaves:
                if isinstance(leaf, torch.Tensor):
                    target = unique_name(leaf_name(name, path), taken)
                    replaced.append(self.create_proxy("placeholder", target, (), {}))
                    self.tensors.append(leaf)
                else:
                    replaced.append(leaf)
            args.append(pytree.tree_unflatten(replaced, spec))
        return root_fn, args

    def iter(self, obj: fx.Proxy):
        """`d.view(B * N, *d.shape[2:])` (mmdet3d's DepthLSSTransform) and `for size in x.shape`
        iterate a value FX only knows symbolically. Its length is the example's: the graph so far
        runs on the example inputs, and each element becomes `obj[i]`, a node that shape folding
        turns into a constant like any other shape value."""
        count = self.example_length(obj)
        if count is None:
            return super().iter(obj)
        return iter([obj[i] for i in range(count)])

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ExampleProxy(node, self)

    def example_length(self, obj: fx.Proxy) -> int | None:
        """len() of what `obj` holds on the example, or None when that has no length."""
        if self.arguments is None:
            return None
        try:
            return len(self._example_value(obj.node))
        except TypeError:
            return None

    def _example_value(self, target: fx.Node):
        interpreter = fx.Interpreter(self.root, garbage_collect_values=False, graph=self.graph)
        given = iter(self.tensors)
        # The tracer patches nn.Module.__call__ (and wrapped functions) while it traces; running
        # modules under those patches would record them again, so they are lifted meanwhile.
        with torch.no_grad(), _patches_lifted():
            for node in self.graph.nodes:
                if node.op == "placeholder":
                    interpreter.env[node] = next(given)
                else:
                    interpreter.env[node] = interpreter.run_node(node)
                if node is target:
                    return interpreter.env[node]
        raise AssertionError(f"{target} is not in the graph being traced")

    def create_arg(self, a):
        # OpenPCDet keeps grid sizes as numpy arrays (`sparse_shape = grid_size[::-1] + [1, 0, 0]`)
        # and passes them to SparseConvTensor, which turns them into int lists itself; an FX graph
        # cannot hold numpy values, so they enter it as the Python lists and scalars they equal.
        if isinstance(a, np.ndarray) and a.ndim <= 1 and a.size <= 16:
            a = a.tolist()
        elif isinstance(a, np.generic):
            a = a.item()
        return super().create_arg(a)


class _ExampleProxy(fx.Proxy):
    """A proxy whose len() is the example's: Python asks for it when `*d.shape[2:]` unpacks."""

    def __len__(self) -> int:
        count = self.tracer.example_length(self)
        return super().__len__() if count is None else count


def _patches_lifted():
    """torch.fx's own context for running real code in the middle of a trace (private, so an
    older or newer torch without it gets a no-op and the iteration then fails as before)."""
    from torch.fx import _symbolic_trace

    lift = getattr(_symbolic_trace, "_maybe_revert_all_patches", None)
    return lift() if lift is not None else contextlib.nullcontext()


def _positional_leaf_calls(graph: fx.Graph, rules: TraceRules) -> None:
    """A leaf function called with keywords (OpenPCDet: `SparseConvTensor(features=...,
    indices=...)`) gets its arguments bound positionally, so passes read one form of the call."""
    for node in graph.nodes:
        if (
            node.op != "call_function"
            or not node.kwargs
            or not (node.target in rules.leaf_functions or isinstance(node.target, type))
        ):
            continue
        try:
            bound = _signature(node.target).bind(*node.args, **node.kwargs)
        except (TypeError, ValueError):  # no introspectable signature: keep the call as written
            continue
        node.args, node.kwargs = bound.args, bound.kwargs


def _signature(target) -> inspect.Signature:
    if isinstance(target, type):  # a constructor recorded as one node: its __init__ minus self
        params = list(inspect.signature(target.__init__).parameters.values())[1:]
        return inspect.Signature(params)
    return inspect.signature(target)


def _merge(fixed: dict, earlier: dict | None) -> dict:
    """A dimension an earlier specialization fixed stays fixed."""
    if not earlier:
        return fixed
    merged = {}
    for name, dims in fixed.items():
        before = earlier.get(name)
        if before is None or len(before) != len(dims):
            merged[name] = dims
        else:
            merged[name] = tuple(
                b if b is not None else d for b, d in zip(before, dims, strict=True)
            )
    return merged
