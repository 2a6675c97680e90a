"""How bevcc-mmdet3d traces a sparse block's forward (a trace rule for spconv's SparseModule).

Three things in mmdet3d's sparse blocks defeat plain torch.fx tracing; the rule handles each by
a general tracing behaviour, not by rewriting the blocks:

1. Asserts on traced values are skipped, as `python -O` runs the code.

mmdet3d's sparse blocks check their input inside forward (`assert x.features.dim() == 2`); on a
tracing Proxy that is a bool() of a graph value, which torch.fx refuses. The check is a debug
check: shape propagation on the example inputs and the exported file's shapes enforce it anyway.
Only a bool() that an `assert` statement consumes is answered (True, nothing recorded); any other
data-dependent branch still fails tracing with torch.fx's error, so nothing is silently guessed.

2. Duck-typing probes see the sparse tensor. mmdet3d's `replace_feature(out, f)` asks
`'replace_feature' in out.__dir__()`; a Proxy's dir() lacks it, so the helper would take its
spconv-1 branch, `out.features = f`, which sets an attribute on the Proxy and drops the BatchNorm
and ReLU from the graph without any error. Inside the rule, dir() of a Proxy that holds a
SparseConvTensor lists SparseConvTensor's attributes, so the helper records `replace_feature`.

3. Writing a public attribute on a Proxy raises: the graph cannot record it, and going on would
trace a model that computes something else.
"""

from __future__ import annotations

import contextlib
import dis
import inspect
import sys

import torch
from torch import fx

_JUMP_IF_TRUE = {"POP_JUMP_IF_TRUE", "POP_JUMP_FORWARD_IF_TRUE"}  # 3.12+, 3.11


def _consumed_by_assert(frame) -> bool:
    instructions = list(dis.get_instructions(frame.f_code))
    offsets = [i.offset for i in instructions]
    try:
        at = offsets.index(frame.f_lasti)
    except ValueError:
        return False
    return (
        instructions[at].opname in _JUMP_IF_TRUE
        and at + 1 < len(instructions)
        and instructions[at + 1].opname == "LOAD_ASSERTION_ERROR"
    )


def _user_frame():
    """The frame whose bytecode asked for bool(proxy): the first one outside torch.fx and here."""
    frame = inspect.currentframe()
    fx_folder = fx.__file__.rsplit("/", 1)[0]
    while frame is not None and (
        frame.f_code.co_filename.startswith(fx_folder) or frame.f_code.co_filename == __file__
    ):
        frame = frame.f_back
    return frame


def holds_sparse_tensor(proxy: fx.Proxy) -> bool:
    """Whether the traced value is a SparseConvTensor: made by its constructor, by replace_feature,
    or returned by an spconv layer other than ToDense."""
    node = proxy.node
    if node.op == "call_method":
        return node.target == "replace_feature"
    if node.op == "call_function":
        return getattr(node.target, "__name__", "") == "SparseConvTensor"
    if node.op == "call_module":
        module = proxy.tracer.root.get_submodule(node.target)
        return type(module).__module__.startswith("spconv.") and type(module).__name__ not in (
            "ToDense",
            "SparseBatchNorm",
            "SparseReLU",
        )
    return False


_PROXY_OWN = {"node", "tracer", "root", "attr"}  # what Proxy and fx.proxy.Attribute set


def _proxy_dir(proxy) -> list[str]:
    names = object.__dir__(proxy)
    if holds_sparse_tensor(proxy):
        from spconv.pytorch import SparseConvTensor

        names = sorted(set(names) | set(dir(SparseConvTensor)))
    return names


def _refuse_setattr(proxy, name, value):
    if name.startswith("_") or name in _PROXY_OWN:  # torch.fx's own bookkeeping
        return object.__setattr__(proxy, name, value)
    raise fx.proxy.TraceError(
        f"forward assigns '{name}' on traced value {object.__getattribute__(proxy, 'node').name}; the graph cannot record "
        "an attribute write: return a new value instead (e.g. x.replace_feature(...))"
    )


@contextlib.contextmanager
def proxies_behave():
    """dir() of sparse proxies lists SparseConvTensor's attributes; attribute writes raise."""
    saved = fx.Proxy.__dict__.get("__dir__"), fx.Proxy.__dict__.get("__setattr__")
    fx.Proxy.__dir__, fx.Proxy.__setattr__ = _proxy_dir, _refuse_setattr
    try:
        yield
    finally:
        for name, value in zip(("__dir__", "__setattr__"), saved, strict=True):
            if value is None:
                delattr(fx.Proxy, name)
            else:
                setattr(fx.Proxy, name, value)


@contextlib.contextmanager
def asserts_skipped(tracer: fx.Tracer):
    """Within the block, bool(proxy) inside an assert statement is True; anything else raises."""
    refuse = tracer.to_bool
    shadowed = tracer.__dict__.get("to_bool")  # an enclosing block's override, if nested

    def to_bool(proxy):
        frame = _user_frame()
        if frame is not None and _consumed_by_assert(frame):
            return True
        return refuse(proxy)

    tracer.to_bool = to_bool
    try:
        yield
    finally:
        if shadowed is None:
            del tracer.to_bool  # back to the class's method
        else:
            tracer.to_bool = shadowed


def trace_sparse_block(module: torch.nn.Module, *args, **kwargs):
    """Trace rule: run the block's own forward under the three behaviours of the module doc."""
    tracer = next((v.tracer for v in (*args, *kwargs.values()) if isinstance(v, fx.Proxy)), None)
    if tracer is None:
        return module.forward(*args, **kwargs)
    with asserts_skipped(tracer), proxies_behave():
        return fx.Tracer.call_module(tracer, module, module.forward, args, kwargs)


assert sys.version_info >= (3, 11), "bytecode patterns above are those of CPython 3.11+"
