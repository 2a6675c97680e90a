"""Plugin discovery (entry-point group `bevcc`) and the process-wide registry built from it."""

from __future__ import annotations

import difflib
import importlib
import os
import warnings
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points

import pluggy

from bevcc import hookspecs
from bevcc.registry import LOCAL_PLUGIN, Registry

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "EXTRA_PLUGINS_ENV",
    "PluginInfo",
    "PluginLoadWarning",
    "Plugins",
    "get_registry",
    "load_plugins",
    "reset",
]

ENTRY_POINT_GROUP = "bevcc"
DISABLE_AUTOLOAD_ENV = "BEVCC_DISABLE_PLUGIN_AUTOLOAD"
EXTRA_PLUGINS_ENV = "BEVCC_PLUGINS"
BUILTIN = "bevcc"
HOOKS = (
    "bevcc_register_passes",
    "bevcc_register_backends",
    "bevcc_register_pipelines",
    "bevcc_register_leaf_modules",
    "bevcc_register_metrics",
    "bevcc_register_models",
)


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded; bevcc goes on without it."""


@dataclass
class PluginInfo:
    name: str
    dist: str | None
    version: str | None
    module: str
    status: str = "ok"  # ok | failed
    error: str | None = None
    contributions: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Plugins:
    registry: Registry
    infos: list[PluginInfo]


def load_plugins(autoload: bool | None = None) -> Plugins:
    """Build a fresh registry from the built-ins and every installed plugin, in a stable order."""
    if autoload is None:
        autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").lower() in ("", "0", "false", "no")
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    infos: list[PluginInfo] = []
    for info, load, hint in _candidates(autoload):
        if pm.has_plugin(info.name):
            continue
        registry.current_plugin = info.name
        try:  # any failure of a plugin (import, hook signature, hook body) is reported by name
            module = load()
            if pm.is_registered(module):
                continue
            pm.register(module, name=info.name)
            _check_hook_names(pm, module, info.name)
            for hook in HOOKS:
                for impl in getattr(pm.hook, hook).get_hookimpls():
                    if impl.plugin_name == info.name:
                        impl.function(registry=registry)
        except Exception as exc:  # noqa: BLE001
            registry.drop_plugin(info.name)
            if pm.has_plugin(info.name):
                pm.unregister(name=info.name)
            _fail(info, exc, hint)
        else:
            info.contributions = registry.contributions(info.name)
        infos.append(info)
    registry.current_plugin = LOCAL_PLUGIN
    return Plugins(registry, infos)


class UnknownHookError(Exception):
    """A plugin implements a hook bevcc does not have (a misspelling registers nothing)."""


def _check_hook_names(pm: pluggy.PluginManager, module, name: str) -> None:
    """pluggy's check_pending, for one plugin: every `bevcc_*` function it defines must be a
    known hook marked with @bevcc.hookimpl, else it would load as "ok" and register nothing."""
    unknown = sorted(
        hook
        for hook, caller in vars(pm.hook).items()
        if not caller.has_spec()
        and any(impl.plugin_name == name for impl in caller.get_hookimpls())
    )
    unmarked = sorted(
        attr
        for attr in dir(module)
        if attr in HOOKS
        and callable(getattr(module, attr))
        and not hasattr(getattr(module, attr), f"{ENTRY_POINT_GROUP}_impl")
    )
    unknown += sorted(
        attr
        for attr in dir(module)
        if attr.startswith("bevcc_register")
        and attr not in HOOKS
        and attr not in unknown
        and callable(getattr(module, attr))
    )
    if unknown:
        close = difflib.get_close_matches(unknown[0], HOOKS, n=1)
        hint = f"did you mean {close[0]}?" if close else f"the hooks are {', '.join(HOOKS)}"
        raise UnknownHookError(f"{unknown[0]} is not a bevcc hook ({hint})")
    if unmarked:
        raise UnknownHookError(
            f"{unmarked[0]} is not marked @bevcc.hookimpl, so pluggy never calls it; decorate it"
        )


def _candidates(autoload: bool):
    """(info, loader, hint on failure) for the built-ins, entry points, and BEVCC_PLUGINS."""
    from bevcc.version import __version__

    yield (
        PluginInfo(BUILTIN, "bevcc", __version__, "bevcc.passes"),
        lambda: importlib.import_module("bevcc.passes"),
        "reinstall bevcc",
    )
    if autoload:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            yield (
                PluginInfo(
                    ep.name, dist.name if dist else None, dist.version if dist else None, ep.value
                ),
                ep.load,
                f"fix or uninstall it, or set {DISABLE_AUTOLOAD_ENV}=1",
            )
    for name in filter(None, (n.strip() for n in os.environ.get(EXTRA_PLUGINS_ENV, "").split(","))):
        yield (
            PluginInfo(name, None, None, name),
            partial(importlib.import_module, name),
            f"fix it or remove it from {EXTRA_PLUGINS_ENV}",
        )


def _fail(info: PluginInfo, exc: Exception, hint: str) -> None:
    info.status = "failed"
    info.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    origin = f" (from {info.dist} {info.version})" if info.dist else ""
    warnings.warn(
        f"plugin '{info.name}'{origin} failed to load: {info.error}; skipped. "
        f"{hint[0].upper()}{hint[1:]}",
        PluginLoadWarning,
        stacklevel=3,
    )


_DEFAULT: Plugins | None = None


def default_plugins() -> Plugins:
    """The process-wide plugin set, loaded on first use. Its registry may still hold deferred
    registrations (see Registry.defer): what lists passes or checks a pipeline uses this."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_plugins()
    return _DEFAULT


def get_registry() -> Registry:
    """The process-wide registry, complete: deferred registrations have run, with their side
    effects (the built-in plugin's spconv CPU kernel fix, for one)."""
    registry = default_plugins().registry
    registry.resolve()
    return registry


def reset() -> None:
    """Forget the loaded plugins (tests, or after installing a plugin in-process)."""
    global _DEFAULT
    _DEFAULT = None
