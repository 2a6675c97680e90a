"""Plugin hooks. Each hook receives the registry and adds to it; built-ins use the same hooks.

Hooks run when plugins load, which every command does, `bevcc passes` included: a hook should
import nothing heavy. Passes can be declared (PassInfo) and the other kinds deferred with
`registry.defer(load, **names)` until a compile needs them.
"""

import pluggy

hookspec = pluggy.HookspecMarker("bevcc")


@hookspec
def bevcc_register_passes(registry):
    """Add passes with `registry.add_pass(PassClass)`, or `registry.add_pass(PassInfo(...))` to
    declare one that is imported only when a pipeline runs it (bevcc.pass_info)."""


@hookspec
def bevcc_register_backends(registry):
    """Add IR conversions / backends (top-level pipeline words) with `registry.add_backend`."""


@hookspec
def bevcc_register_pipelines(registry):
    """Add named pipelines with `registry.add_pipeline(name, text, summary)`."""


@hookspec
def bevcc_register_leaf_modules(registry):
    """Declare nn.Module types FX must not trace into, with `registry.add_leaf_module(Type)`."""


@hookspec
def bevcc_register_metrics(registry):
    """Add metrics with `registry.add_metric(name, fn)`."""


@hookspec
def bevcc_register_models(registry):
    """Add model builders with `registry.add_model(name, builder)`."""
