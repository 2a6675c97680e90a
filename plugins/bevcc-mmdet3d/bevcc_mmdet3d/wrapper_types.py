"""isinstance rules for mmcv's layer wrappers: while tracing, each wrapper is its torch base class.

mmcv registers `Conv`, `Conv3d`, `deconv`, `deconv3d` (and MaxPool) as subclasses of the torch
layers whose only addition is an empty-input path for torch < 1.4 (< 1.9 for pooling). bevcc's
passes recognize torch's layers (qdq_insert by exact type, FX by the `torch.nn` leaf rule), so a
wrapper would be traced into as a functional conv: not folded, not quantized. The trace rule puts
the torch base class on the traced copy's layer (FxIR.trace works on a deep copy; the user's
model keeps its classes) and records it as one call_module node of that class.

The rules are registered for the torch base classes, so loading the plugin does not import mmcv:
torch's own layers are FX leaves and never reach a rule; a subclass that is not a known mmcv
wrapper (say, a user's weight-standardized conv) is traced through its own forward as before.
"""

from __future__ import annotations

import sys

import torch
from torch import fx, nn

# A wrapper may only be replaced by its base if it adds nothing but its forward.
_ALLOWED_OWN_ATTRIBUTES = {
    "__module__",
    "__doc__",
    "__qualname__",
    "forward",
    "__annotations__",
    "__firstlineno__",
    "__static_attributes__",
}


BASE_NAMES = (
    "Conv2d",
    "Conv3d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "MaxPool2d",
    "MaxPool3d",
    "Linear",
)


def base_types() -> tuple[type, ...]:
    return tuple(getattr(nn, name) for name in BASE_NAMES)


def wrapper_bases() -> dict[type, type]:
    """mmcv wrapper class -> the torch layer class it stands for (empty if mmcv is not loaded:
    then no model holds a wrapper)."""
    wrappers = sys.modules.get("mmcv.cnn.bricks.wrappers")
    if wrappers is None:
        return {}
    if wrappers.obsolete_torch_version(wrappers.TORCH_VERSION, (1, 9)):
        return {}  # the empty-input paths are live on this torch: keep tracing the wrappers
    table = {}
    for name in BASE_NAMES:
        wrapper = getattr(wrappers, name, None)
        base = getattr(nn, name)
        if (
            wrapper is not None
            and wrapper.__bases__ == (base,)
            and set(vars(wrapper)) <= _ALLOWED_OWN_ATTRIBUTES
        ):
            table[wrapper] = base
    return table


def trace_as_torch_base(module: nn.Module, *args, **kwargs):
    """Trace rule: give the traced copy's wrapper its torch base class, then call it as a leaf;
    trace any other subclass through its own forward, as torch.fx would."""
    tracer = _tracer_of(args, kwargs)
    base = wrapper_bases().get(type(module))
    if base is not None:
        module.__class__ = base
    return fx.Tracer.call_module(tracer, module, module.forward, args, kwargs)


def _tracer_of(args, kwargs):
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.fx.Proxy):
            return value.tracer
    raise TypeError("an mmcv wrapper layer was called without a traced tensor input")
