"""The registry's runtime tables: what FX tracing, folding and evaluation read (leaf modules, trace
rules, foldables, leaf functions, metrics, models). Plugins may defer filling them, so listing
passes or checking a pipeline never imports torch for them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bevcc.errors import BevccError, PluginError
from bevcc.ir.trace_rules import TraceRules

PLURAL = {
    "pass": "passes",
    "backend": "backends",
    "pipeline": "pipelines",
    "leaf_module": "leaf_modules",
    "metric": "metrics",
    "model": "models",
    "foldable": "foldables",
    "trace_rule": "trace_rules",
    "leaf_function": "leaf_functions",
}
DEFERRABLE = ("leaf_modules", "foldables", "trace_rules", "leaf_functions", "metrics", "models")


@dataclass
class Entry:
    """One registered item and the plugin that contributed it."""

    name: str
    obj: Any
    plugin: str
    kind: str  # a key of PLURAL


@dataclass
class Deferred:
    """Registrations a plugin put off until something needs them (see RuntimeTables.defer)."""

    plugin: str
    load: Callable[[Any], None]
    declared: dict[str, list[str]]  # plural kind -> names, for `bevcc plugins`
    # Where each ordered table stood at defer(): the entries land there, as if registered then.
    # Order matters: the first trace rule whose type matches wins, so a plugin's rule for a base
    # class must stay behind the built-in rule for its subclass.
    positions: dict[str, int]


_ORDERED = ("_leaf_modules", "_foldables", "_container_rules", "_leaf_functions")


class RuntimeTables:
    """Base of Registry. Reading any table first runs the deferred registrations."""

    current_plugin: str

    def __init__(self):
        self._leaf_modules: list[Entry] = []
        self._foldables: list[Entry] = []  # obj: (module_type, weight layout)
        self._container_rules: list[Entry] = []  # obj: (container type, rule)
        self._leaf_functions: list[Entry] = []
        self._metrics: dict[str, Entry] = {}
        self._models: dict[str, Entry] = {}
        self._deferred: list[Deferred] = []

    # ---- registration ---------------------------------------------------------------------------
    def defer(self, load: Callable[[Any], None], **declared: Iterable[str]) -> None:
        """Put off registrations that import heavy modules until a runtime table is read.

        `load(registry)` makes the real add_leaf_module/add_metric/... calls; `declared` names
        what it will add per kind (e.g. metrics=["sqnr"]) so `bevcc plugins` lists it unloaded.
        """
        unknown = sorted(set(declared) - set(DEFERRABLE))
        if unknown or not callable(load):
            raise PluginError(
                f"plugin '{self.current_plugin}': defer expects a callable and "
                f"kinds among {', '.join(DEFERRABLE)}; got {load!r}, "
                f"{', '.join(unknown) or 'no unknown kind'}"
            )
        self._deferred.append(
            Deferred(
                self.current_plugin,
                load,
                {k: sorted(v) for k, v in declared.items()},
                {t: len(getattr(self, t)) for t in _ORDERED},
            )
        )

    def add_leaf_module(self, module_type: type) -> type:
        """Declare a module type that FX tracing must treat as one opaque call."""
        if not isinstance(module_type, type):
            raise PluginError(
                f"plugin '{self.current_plugin}': add_leaf_module expects a class, "
                f"got {module_type!r}"
            )
        if all(e.obj is not module_type for e in self._leaf_modules):
            self._leaf_modules.append(
                Entry(_type_name(module_type), module_type, self.current_plugin, "leaf_module")
            )
        return module_type

    def add_foldable(self, module_type: type, layout: str = "out_first") -> type:
        """Declare a conv-like module type BatchNorm folds into (matched by isinstance).

        layout: "out_first" (weight [Cout, ...]) or "transposed" (weight [Cin, Cout/groups, ...]).
        The type needs `weight`, `bias` (may be None) and `out_channels` attributes.
        """
        if layout not in ("out_first", "transposed"):
            raise PluginError(
                f"plugin '{self.current_plugin}': add_foldable layout must be "
                f"out_first or transposed, got {layout!r}"
            )
        self._foldables.append(
            Entry(_type_name(module_type), (module_type, layout), self.current_plugin, "foldable")
        )
        return module_type

    def add_trace_rule(self, module_type: type, rule: Callable) -> Callable:
        """Trace `module_type` with rule(module, *args, **kwargs) instead of its forward.

        For containers whose forward branches on the runtime type of its input (which a tracing
        Proxy never matches); the children the rule calls are traced under their own names.
        """
        if not isinstance(module_type, type) or not callable(rule):
            raise PluginError(
                f"plugin '{self.current_plugin}': add_trace_rule expects a class "
                f"and a callable, got {module_type!r}, {rule!r}"
            )
        self._container_rules.append(
            Entry(_type_name(module_type), (module_type, rule), self.current_plugin, "trace_rule")
        )
        return rule

    def add_leaf_function(self, fn: Callable) -> Callable:
        """Record calls of `fn` (a function or class called by a global name) as one FX node."""
        if not callable(fn):
            raise PluginError(
                f"plugin '{self.current_plugin}': add_leaf_function expects a callable, got {fn!r}"
            )
        if all(e.obj is not fn for e in self._leaf_functions):
            name = _type_name(fn) if hasattr(fn, "__qualname__") else repr(fn)
            self._leaf_functions.append(Entry(name, fn, self.current_plugin, "leaf_function"))
        return fn

    def add_metric(self, name: str, fn: Callable) -> Callable:
        return self._add_named(self._metrics, name, fn, "metric")

    def add_model(self, name: str, builder: Callable) -> Callable:
        """A named model builder: a callable returning nn.Module or (module, example_inputs)."""
        return self._add_named(self._models, name, builder, "model")

    # ---- the tables -----------------------------------------------------------------------------
    @property
    def leaf_modules(self) -> list[Entry]:
        self.resolve()
        return self._leaf_modules

    @property
    def foldables(self) -> list[Entry]:
        self.resolve()
        return self._foldables

    @property
    def container_rules(self) -> list[Entry]:
        self.resolve()
        return self._container_rules

    @property
    def leaf_functions(self) -> list[Entry]:
        self.resolve()
        return self._leaf_functions

    @property
    def metrics(self) -> dict[str, Entry]:
        self.resolve()
        return self._metrics

    @property
    def models(self) -> dict[str, Entry]:
        self.resolve()
        return self._models

    def model_names(self) -> list[str]:
        """The registered model names, deferred ones by what their plugin declared: for help
        text, which must not run a deferred load (they import torch)."""
        names = set(self._models)
        for group in self._deferred:
            names.update(group.declared.get("models", ()))
        return sorted(names)

    def leaf_types(self) -> tuple[type, ...]:
        return tuple(e.obj for e in self.leaf_modules)

    def trace_rules(self) -> TraceRules:
        """Everything FX tracing needs from plugins, in registration order."""
        return TraceRules(
            self.leaf_types(),
            tuple(e.obj for e in self.container_rules),
            tuple(e.obj for e in self.leaf_functions),
        )

    def resolve(self) -> None:
        """Run every deferred registration now (get_registry() does, for a complete registry).

        A deferred load that fails is one PluginError naming the plugin; what it had added is
        dropped, as for a hook that fails while plugins load.
        """
        while self._deferred:
            group = self._deferred.pop(0)
            outer, self.current_plugin = self.current_plugin, group.plugin
            ends = {t: len(getattr(self, t)) for t in _ORDERED}
            try:
                group.load(self)
                self._move_into_place(group, ends)
            except Exception as exc:
                self._drop_runtime(group.plugin)
                if isinstance(exc, BevccError):
                    raise
                raise PluginError(
                    f"plugin '{group.plugin}' failed to register its "
                    f"{', '.join(group.declared) or 'deferred contributions'}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            finally:
                self.current_plugin = outer

    # ---- bookkeeping ----------------------------------------------------------------------------
    def _move_into_place(self, group: Deferred, ends: dict[str, int]) -> None:
        for name in _ORDERED:
            table = getattr(self, name)
            added = table[ends[name] :]
            del table[ends[name] :]
            at = group.positions[name]
            table[at:at] = added
            for later in self._deferred:  # deferred after this group: their place moves too
                if later.positions[name] >= at:
                    later.positions[name] += len(added)

    def _runtime_contributions(self, plugin: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for e in [
            *self._leaf_modules,
            *self._foldables,
            *self._container_rules,
            *self._leaf_functions,
            *self._metrics.values(),
            *self._models.values(),
        ]:
            if e.plugin == plugin:
                out.setdefault(PLURAL[e.kind], set()).add(e.name)
        for group in self._deferred:
            if group.plugin == plugin:
                for kind, names in group.declared.items():
                    out.setdefault(kind, set()).update(names)
        return out

    def _drop_runtime(self, plugin: str) -> None:
        self._deferred = [g for g in self._deferred if g.plugin != plugin]
        self._leaf_modules = [e for e in self._leaf_modules if e.plugin != plugin]
        self._foldables = [e for e in self._foldables if e.plugin != plugin]
        self._container_rules = [e for e in self._container_rules if e.plugin != plugin]
        self._leaf_functions = [e for e in self._leaf_functions if e.plugin != plugin]
        self._metrics = {k: e for k, e in self._metrics.items() if e.plugin != plugin}
        self._models = {k: e for k, e in self._models.items() if e.plugin != plugin}

    def _add_named(self, table: dict[str, Entry], name: str, obj: Callable, kind: str):
        if not callable(obj):
            raise PluginError(f"plugin '{self.current_plugin}': {kind} '{name}' is not callable")
        previous = table.get(name)
        if previous is not None and previous.obj is not obj:
            raise PluginError(
                f"{kind} '{name}' is registered twice: by '{previous.plugin}' and "
                f"by '{self.current_plugin}'; rename one"
            )
        table[name] = Entry(name, obj, self.current_plugin, kind)
        return obj


def _type_name(tp: type) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"
