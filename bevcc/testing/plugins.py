"""A registry with the installed plugins, for a plugin's own tests."""

from __future__ import annotations

from bevcc.plugins import load_plugins
from bevcc.registry import Registry


def plugin_registry(*names: str) -> Registry:
    """A fresh registry: the built-ins and every installed plugin, loaded through their entry
    points as `bevcc` loads them. Fails, saying how to fix it, unless each plugin in `names`
    (entry-point names, as `bevcc plugins` lists them) loaded; a test of a plugin that is not
    installed would otherwise fail later on an unknown pass or model."""
    loaded = load_plugins(autoload=True)
    status = {info.name: info for info in loaded.infos}
    for name in names:
        info = status.get(name)
        if info is None:
            raise AssertionError(
                f"plugin '{name}' is not installed: pip install -e the folder that holds it, "
                "or put its module on PYTHONPATH and name it in BEVCC_PLUGINS"
            )
        if info.status != "ok":
            raise AssertionError(f"plugin '{name}' failed to load: {info.error}")
    return loaded.registry
