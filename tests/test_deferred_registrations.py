"""Registrations a plugin defers (Registry.defer): listed by their declared names, run when a
runtime table is first read, in the place they were deferred from."""

import pytest

from bevcc import plugins
from bevcc.errors import PluginError
from bevcc.registry import Registry
from tests.conftest import repo_plugins


class _Base:
    pass


class _Sub(_Base):
    pass


def _rule_for_sub(module, *args):
    return "sub"


def _rule_for_base(module, *args):
    return "base"


def test_the_builtins_declared_names_are_what_their_loaders_register(registry):
    declared = registry.contributions("bevcc")
    assert len(declared["leaf_modules"]) == 22  # 14 for spconv (a dev dependency), 8 quantization
    assert declared["metrics"] == ["cosine", "sqnr"]
    registry.resolve()
    assert registry.contributions("bevcc") == declared
    assert "TensorQuantizer" in {t.__name__ for t in registry.leaf_types()}


def test_the_repos_plugins_declare_what_they_register():
    """Their hooks declare passes and defer the rest (so listing them imports no torch); what
    `bevcc plugins` lists from the declarations is what loading registers, and each declared
    pass class agrees with its declaration."""
    loaded = plugins.load_plugins(autoload=True)
    declared = {info.name: info.contributions for info in loaded.infos}
    assert set(repo_plugins()) <= set(declared)
    registry = loaded.registry
    registry.resolve()
    for name in repo_plugins():
        assert registry.contributions(name) == declared[name], name
    for entry in registry.entries():
        if entry.plugin in repo_plugins():
            assert entry.obj.name == entry.name  # imports the class: PluginError on disagreement


def test_deferred_entries_take_the_place_they_were_deferred_from():
    reg = Registry(current_plugin="first")
    reg.defer(lambda r: r.add_trace_rule(_Sub, _rule_for_sub), trace_rules=["sub"])
    reg.current_plugin = "second"
    reg.add_trace_rule(_Base, _rule_for_base)  # registered later, read first were it appended
    reg.defer(lambda r: r.add_leaf_module(_Sub), leaf_modules=["sub"])
    reg.add_leaf_module(_Base)
    assert reg.contributions("first") == {"trace_rules": ["sub"]}
    rules = reg.trace_rules()  # reading runs both deferred groups
    assert rules.container_rule(_Sub()) is _rule_for_sub
    assert rules.container_rule(_Base()) is _rule_for_base
    assert [e.plugin for e in reg.container_rules] == ["first", "second"]
    assert rules.leaf_types == (_Sub, _Base)


def test_a_deferred_load_that_fails_is_one_error_naming_the_plugin_and_leaves_nothing():
    def half(registry):
        registry.add_metric("half", len)
        raise RuntimeError("no torch here")

    reg = Registry(current_plugin="broken")
    reg.defer(half, metrics=["half"])
    with pytest.raises(
        PluginError,
        match=r"^plugin 'broken' failed to register its metrics: "
        r"RuntimeError: no torch here$",
    ):
        reg.resolve()
    assert reg.metrics == {} and reg.contributions("broken") == {}


def test_defer_names_only_runtime_kinds():
    reg = Registry(current_plugin="odd")
    with pytest.raises(
        PluginError,
        match=r"^plugin 'odd': defer expects a callable and kinds "
        r"among leaf_modules, foldables, trace_rules, "
        r"leaf_functions, metrics, models; got .*, passes$",
    ):
        reg.defer(lambda r: None, passes=["x"])


def test_get_registry_is_complete_and_dropping_a_plugin_drops_what_it_deferred(monkeypatch):
    loaded = plugins.load_plugins(autoload=False)
    monkeypatch.setattr(plugins, "_DEFAULT", loaded)
    calls = []
    loaded.registry.current_plugin = "counted"
    loaded.registry.defer(lambda r: calls.append("ran"), models=["counted"])
    loaded.registry.current_plugin = "dropped"
    loaded.registry.defer(lambda r: calls.append("dropped ran"), models=["dropped"])
    loaded.registry.drop_plugin("dropped")
    assert plugins.default_plugins().registry is loaded.registry and calls == []
    assert plugins.get_registry() is loaded.registry and calls == ["ran"]
    assert loaded.registry.contributions("dropped") == {}
