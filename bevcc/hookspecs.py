"""Plugin hooks. Each hook receives the registry and adds to it; built-ins use the same hooks.

Hooks run when plugins load, which every command does, `bevcc passes` included: a hook should
import nothing heavy (torch, onnx, numpy). Passes can be declared (PassInfo) and the other kinds
deferred with `registry.defer(load, **names)` until a compile needs them. Implement a hook in the
module your `bevcc` entry point names, marked `@bevcc.hookimpl`; the parameter must be called
`registry`, and the return value is ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # annotations only: loading the hooks stays as light as the registry
    from bevcc.registry import Registry

__all__ = [
    "bevcc_register_backends",
    "bevcc_register_leaf_modules",
    "bevcc_register_metrics",
    "bevcc_register_models",
    "bevcc_register_passes",
    "bevcc_register_pipelines",
]

hookspec = pluggy.HookspecMarker("bevcc")


@hookspec
def bevcc_register_passes(registry: Registry) -> None:
    """Add in-IR passes: `registry.add_pass(PassInfo(name=..., ir=..., summary=...,
    impl="pkg.module:Class", options=Options))` declares one that is imported only when a
    pipeline runs it (bevcc.pass_info); `registry.add_pass(PassClass)` registers a class that is
    already imported."""


@hookspec
def bevcc_register_backends(registry: Registry) -> None:
    """Add IR conversions / backends (top-level pipeline words such as `export`):
    `registry.add_backend(PassInfo(..., produces="<ir>"))`, or `add_backend(ConversionClass)`."""


@hookspec
def bevcc_register_pipelines(registry: Registry) -> None:
    """Add named pipelines: `registry.add_pipeline(name, text, summary)` (text is parsed now;
    its words are checked when a command uses it)."""


@hookspec
def bevcc_register_leaf_modules(registry: Registry) -> None:
    """Tell FX tracing about your types: `registry.add_leaf_module(Type)` (traced as one opaque
    call), `add_trace_rule(ContainerType, rule)`, `add_leaf_function(fn)`,
    `add_foldable(Type, layout)`. These import your modules, so make the calls inside
    `registry.defer(load, leaf_modules=[...], trace_rules=[...], ...)`."""


@hookspec
def bevcc_register_metrics(registry: Registry) -> None:
    """Add metrics: `registry.add_metric(name, fn)`, inside
    `registry.defer(load, metrics=[name, ...])` when fn's module imports anything heavy."""


@hookspec
def bevcc_register_models(registry: Registry) -> None:
    """Add model builders for `bevcc compile NAME`: `registry.add_model(name, builder)`, inside
    `registry.defer(load, models=[name, ...])` when the builder's module imports torch."""
