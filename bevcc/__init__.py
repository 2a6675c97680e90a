"""bevcc: a pass-manager compiler that prepares 3D perception models for INT8 TensorRT."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from bevcc.errors import BevccError, InputError, PassError, PluginError, UsageError
from bevcc.pm.pass_base import NoOptions, Pass, PassContext, PassResult
from bevcc.public import PUBLIC_MODULES
from bevcc.version import __version__

if TYPE_CHECKING:
    from bevcc.compiler import CompileResult, compile
    from bevcc.deploy.set_compile import SetResult, compile_set
    from bevcc.ir.fx import FxIR
    from bevcc.ir.onnx import OnnxIR
    from bevcc.pm.instrument import Instrumentation

hookimpl = pluggy.HookimplMarker("bevcc")
"""Mark a plugin's hook implementations: `@bevcc.hookimpl def bevcc_register_passes(registry)`."""


def register_pass(pass_cls: type[Pass]) -> type[Pass]:
    """Register a pass (or, for conversions, a backend) in this process; usable as a decorator."""
    from bevcc.plugins import default_plugins

    registry = default_plugins().registry  # adding needs no deferred registrations loaded
    return (
        registry.add_backend(pass_cls) if pass_cls.is_conversion() else registry.add_pass(pass_cls)
    )


def register_leaf_module(module_type: type) -> type:
    """Make FX tracing treat `module_type` as one opaque call, in this process."""
    from bevcc.plugins import default_plugins

    return default_plugins().registry.add_leaf_module(module_type)


def __getattr__(name: str):
    # The IR classes import torch/onnx, the compiler numpy, and set compiles are a layer above
    # the core: load them only when asked for, so that plugins importing bevcc for its hookimpl
    # marker and the CLI's listing commands stay fast.
    if name in ("compile", "CompileResult"):
        from bevcc import compiler

        return getattr(compiler, name)
    if name == "Instrumentation":  # hooks around every pass: bevcc.compile(instrumentations=)
        from bevcc.pm.instrument import Instrumentation

        return Instrumentation
    if name in ("compile_set", "SetResult"):
        from bevcc.deploy import set_compile

        return getattr(set_compile, name)
    if name == "FxIR":
        from bevcc.ir.fx import FxIR

        return FxIR
    if name == "OnnxIR":
        from bevcc.ir.onnx import OnnxIR

        return OnnxIR
    raise AttributeError(f"module 'bevcc' has no attribute {name!r}")


__all__ = [
    "PUBLIC_MODULES",
    "BevccError",
    "CompileResult",
    "FxIR",
    "InputError",
    "Instrumentation",
    "NoOptions",
    "OnnxIR",
    "Pass",
    "PassContext",
    "PassError",
    "PassResult",
    "PluginError",
    "SetResult",
    "UsageError",
    "__version__",
    "compile",
    "compile_set",
    "hookimpl",
    "register_leaf_module",
    "register_pass",
]
