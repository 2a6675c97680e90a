"""Plugin hooks. Each hook receives the registry and adds to it; built-ins use the same hooks."""

import pluggy

hookspec = pluggy.HookspecMarker("bevcc")


@hookspec
def bevcc_register_passes(registry):
    """Add passes with `registry.add_pass(PassClass)`."""


@hookspec
def bevcc_register_backends(registry):
    """Add IR conversions / backends (top-level pipeline words) with `registry.add_backend`."""


@hookspec
def bevcc_register_leaf_modules(registry):
    """Declare nn.Module types FX must not trace into, with `registry.add_leaf_module(Type)`."""


@hookspec
def bevcc_register_metrics(registry):
    """Add metrics with `registry.add_metric(name, fn)`."""


@hookspec
def bevcc_register_models(registry):
    """Add model builders with `registry.add_model(name, builder)`."""
