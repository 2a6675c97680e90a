"""Plugin discovery (entry-point group `bevcc`) and the process-wide registry built from it."""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType

import pluggy

from bevcc import hookspecs
from bevcc.registry import Registry

ENTRY_POINT_GROUP = "bevcc"
DISABLE_AUTOLOAD_ENV = "BEVCC_DISABLE_PLUGIN_AUTOLOAD"
EXTRA_PLUGINS_ENV = "BEVCC_PLUGINS"
BUILTIN = "bevcc"
HOOKS = ("bevcc_register_passes", "bevcc_register_backends", "bevcc_register_leaf_modules",
         "bevcc_register_metrics", "bevcc_register_models")


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
    """Build a fresh registry from the built-ins and every installed plugin."""
    if autoload is None:
        autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").lower() in ("", "0", "false", "no")
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []

    from bevcc import __version__
    from bevcc import passes as builtin_passes

    candidates: list[tuple[PluginInfo, object]] = [
        (PluginInfo(BUILTIN, "bevcc", __version__, builtin_passes.__name__), builtin_passes)]
    if autoload:
        candidates += _entry_point_plugins(infos)
    candidates += _env_plugins(infos)

    registry = Registry()
    for info, module in candidates:
        if pm.is_registered(module) or pm.has_plugin(info.name):
            continue
        try:
            pm.register(module, name=info.name)
        except Exception as exc:  # noqa: BLE001 - pluggy validates hook signatures here
            _fail(info, exc, infos)
            continue
        registry.current_plugin = info.name
        try:
            for hook in HOOKS:
                for impl in getattr(pm.hook, hook).get_hookimpls():
                    if impl.plugin_name == info.name:
                        impl.function(registry=registry)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported by name, the rest load
            registry.drop_plugin(info.name)
            _fail(info, exc, infos)
            continue
        info.contributions = registry.contributions(info.name)
        infos.append(info)
    registry.current_plugin = "<local>"
    return Plugins(registry, infos)


def _entry_point_plugins(infos: list[PluginInfo]) -> list[tuple[PluginInfo, object]]:
    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        info = PluginInfo(ep.name, dist.name if dist else None, dist.version if dist else None,
                          ep.value)
        try:
            found.append((info, ep.load()))
        except Exception as exc:  # noqa: BLE001 - any import failure is reported by plugin name
            _fail(info, exc, infos)
    return found


def _env_plugins(infos: list[PluginInfo]) -> list[tuple[PluginInfo, ModuleType]]:
    found = []
    for name in filter(None, (n.strip() for n in os.environ.get(EXTRA_PLUGINS_ENV, "").split(","))):
        info = PluginInfo(name, None, None, name)
        try:
            found.append((info, importlib.import_module(name)))
        except Exception as exc:  # noqa: BLE001 - any import failure is reported by plugin name
            _fail(info, exc, infos)
    return found


def _fail(info: PluginInfo, exc: Exception, infos: list[PluginInfo]) -> None:
    info.status = "failed"
    info.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    infos.append(info)
    origin = f" (from {info.dist} {info.version})" if info.dist else ""
    warnings.warn(f"plugin '{info.name}'{origin} failed to load: {info.error}; skipped. Fix or "
                  f"uninstall it, or set {DISABLE_AUTOLOAD_ENV}=1", PluginLoadWarning, stacklevel=2)


_DEFAULT: Plugins | None = None


def default_plugins() -> Plugins:
    """The process-wide plugin set, loaded on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_plugins()
    return _DEFAULT


def get_registry() -> Registry:
    return default_plugins().registry


def reset() -> None:
    """Forget the loaded plugins (tests, or after installing a plugin in-process)."""
    global _DEFAULT
    _DEFAULT = None
