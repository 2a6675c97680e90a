"""The registry plugins fill: passes, backends (IR conversions), FX leaf modules, metrics, models."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bevcc.errors import PluginError, UsageError
from bevcc.ir.trace_rules import TraceRules
from bevcc.pm.pass_base import Pass

IR_KINDS = ("fx", "onnx", "libspconv")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
LOCAL_PLUGIN = "<local>"
_PLURAL = {"pass": "passes", "backend": "backends", "leaf_module": "leaf_modules",
           "metric": "metrics", "model": "models", "foldable": "foldables",
           "trace_rule": "trace_rules", "leaf_function": "leaf_functions"}


@dataclass
class Entry:
    """One registered item and the plugin that contributed it."""

    name: str
    obj: Any
    plugin: str
    kind: str  # a key of _PLURAL


@dataclass
class Registry:
    """Handed to every plugin hook; holds everything contributed, keyed for lookup."""

    passes: dict[tuple[str, str], Entry] = field(default_factory=dict)  # (ir, name) -> Entry
    leaf_modules: list[Entry] = field(default_factory=list)
    foldables: list[Entry] = field(default_factory=list)  # obj: (module_type, weight layout)
    container_rules: list[Entry] = field(default_factory=list)  # obj: (container type, rule)
    leaf_functions: list[Entry] = field(default_factory=list)
    metrics: dict[str, Entry] = field(default_factory=dict)
    models: dict[str, Entry] = field(default_factory=dict)
    current_plugin: str = LOCAL_PLUGIN

    # ---- registration (called from plugin hooks) ------------------------------------------------
    def add_pass(self, pass_cls: type[Pass]) -> type[Pass]:
        """Register an in-IR pass; returns the class so it also works as a decorator."""
        self._check_pass(pass_cls, conversion=False)
        return self._add_pass_entry(pass_cls, "pass")

    def add_backend(self, pass_cls: type[Pass]) -> type[Pass]:
        """Register a conversion (a top-level pipeline word such as `export`)."""
        self._check_pass(pass_cls, conversion=True)
        return self._add_pass_entry(pass_cls, "backend")

    def add_leaf_module(self, module_type: type) -> type:
        """Declare a module type that FX tracing must treat as one opaque call."""
        if not isinstance(module_type, type):
            raise PluginError(f"plugin '{self.current_plugin}': add_leaf_module expects a class, "
                              f"got {module_type!r}")
        if all(e.obj is not module_type for e in self.leaf_modules):
            self.leaf_modules.append(Entry(_type_name(module_type), module_type,
                                           self.current_plugin, "leaf_module"))
        return module_type

    def add_foldable(self, module_type: type, layout: str = "out_first") -> type:
        """Declare a conv-like module type BatchNorm folds into (matched by isinstance).

        layout: "out_first" (weight [Cout, ...]) or "transposed" (weight [Cin, Cout/groups, ...]).
        The type needs `weight`, `bias` (may be None) and `out_channels` attributes.
        """
        if layout not in ("out_first", "transposed"):
            raise PluginError(f"plugin '{self.current_plugin}': add_foldable layout must be "
                              f"out_first or transposed, got {layout!r}")
        self.foldables.append(Entry(_type_name(module_type), (module_type, layout),
                                    self.current_plugin, "foldable"))
        return module_type

    def add_trace_rule(self, module_type: type, rule: Callable) -> Callable:
        """Trace `module_type` with rule(module, *args, **kwargs) instead of its forward.

        For containers whose forward branches on the runtime type of its input (which a tracing
        Proxy never matches); the children the rule calls are traced under their own names.
        """
        if not isinstance(module_type, type) or not callable(rule):
            raise PluginError(f"plugin '{self.current_plugin}': add_trace_rule expects a class "
                              f"and a callable, got {module_type!r}, {rule!r}")
        self.container_rules.append(Entry(_type_name(module_type), (module_type, rule),
                                       self.current_plugin, "trace_rule"))
        return rule

    def add_leaf_function(self, fn: Callable) -> Callable:
        """Record calls of `fn` (a function or class called by a global name) as one FX node."""
        if not callable(fn):
            raise PluginError(f"plugin '{self.current_plugin}': add_leaf_function expects a "
                              f"callable, got {fn!r}")
        if all(e.obj is not fn for e in self.leaf_functions):
            name = _type_name(fn) if hasattr(fn, "__qualname__") else repr(fn)
            self.leaf_functions.append(Entry(name, fn, self.current_plugin, "leaf_function"))
        return fn

    def add_metric(self, name: str, fn: Callable) -> Callable:
        return self._add_named(self.metrics, name, fn, "metric")

    def add_model(self, name: str, builder: Callable) -> Callable:
        """A named model builder: a callable returning nn.Module or (module, example_inputs)."""
        return self._add_named(self.models, name, builder, "model")

    # ---- lookup ---------------------------------------------------------------------------------
    def leaf_types(self) -> tuple[type, ...]:
        return tuple(e.obj for e in self.leaf_modules)

    def trace_rules(self) -> TraceRules:
        """Everything FX tracing needs from plugins, in registration order."""
        return TraceRules(self.leaf_types(), tuple(e.obj for e in self.container_rules),
                          tuple(e.obj for e in self.leaf_functions))

    def lookup(self, name: str, ir: str, conversion: bool) -> type[Pass]:
        """The pass `name` on `ir`; an unknown name is one UsageError listing the closest names."""
        entry = self.passes.get((ir, name))
        if entry is not None and entry.obj.is_conversion() == conversion:
            return entry.obj
        elsewhere = [e for (i, n), e in self.passes.items() if n == name]
        if elsewhere:
            raise UsageError(_misplaced(name, ir, conversion, elsewhere))
        candidates = sorted({n for (i, n), e in self.passes.items()
                             if e.obj.is_conversion() == conversion and (conversion or i == ir)})
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
        where = "conversion" if conversion else f"{ir} pass"
        hint = f"did you mean {', '.join(close)}?" if close else \
            f"known: {', '.join(candidates) or 'none'}"
        raise UsageError(f"unknown {where} '{name}': {hint} (see `bevcc passes`)")

    def entries(self) -> list[Entry]:
        return sorted(self.passes.values(), key=lambda e: (e.obj.ir, e.name))

    def contributions(self, plugin: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        everything = [*self.passes.values(), *self.leaf_modules, *self.foldables,
                      *self.container_rules, *self.leaf_functions, *self.metrics.values(),
                      *self.models.values()]
        for e in everything:
            if e.plugin == plugin:
                label = f"{e.obj.ir}:{e.name}" if e.kind in ("pass", "backend") else e.name
                out.setdefault(_PLURAL[e.kind], []).append(label)
        return {k: sorted(v) for k, v in sorted(out.items())}

    def drop_plugin(self, plugin: str) -> None:
        """Remove what a plugin registered (used when its hook fails half-way)."""
        self.passes = {k: e for k, e in self.passes.items() if e.plugin != plugin}
        self.leaf_modules = [e for e in self.leaf_modules if e.plugin != plugin]
        self.foldables = [e for e in self.foldables if e.plugin != plugin]
        self.container_rules = [e for e in self.container_rules if e.plugin != plugin]
        self.leaf_functions = [e for e in self.leaf_functions if e.plugin != plugin]
        self.metrics = {k: e for k, e in self.metrics.items() if e.plugin != plugin}
        self.models = {k: e for k, e in self.models.items() if e.plugin != plugin}

    # ---- helpers --------------------------------------------------------------------------------
    def _add_pass_entry(self, pass_cls: type[Pass], kind: str) -> type[Pass]:
        key = (pass_cls.ir, pass_cls.name)
        previous = self.passes.get(key)
        if previous is not None and previous.obj is not pass_cls:
            raise PluginError(f"pass '{pass_cls.name}' on {pass_cls.ir} is registered twice: by "
                              f"'{previous.plugin}' and by '{self.current_plugin}'; rename one")
        self.passes[key] = Entry(pass_cls.name, pass_cls, self.current_plugin, kind)
        return pass_cls

    def _check_pass(self, pass_cls: Any, conversion: bool) -> None:
        who = f"plugin '{self.current_plugin}'"
        if not (isinstance(pass_cls, type) and issubclass(pass_cls, Pass)):
            raise PluginError(f"{who}: {pass_cls!r} is not a bevcc.Pass subclass")
        label = pass_cls.__qualname__
        for attr in ("name", "summary", "ir"):
            if not isinstance(getattr(pass_cls, attr, None), str):
                raise PluginError(f"{who}: pass class {label} must set `{attr}` (a string)")
        if not _NAME.fullmatch(pass_cls.name):
            raise PluginError(f"{who}: pass name '{pass_cls.name}' must be lower_snake_case")
        if pass_cls.ir not in IR_KINDS or pass_cls.output_kind() not in IR_KINDS:
            raise PluginError(f"{who}: pass '{pass_cls.name}' names an unknown IR; known: "
                              f"{', '.join(IR_KINDS)}")
        if not dataclasses.is_dataclass(pass_cls.Options):
            raise PluginError(f"{who}: pass '{pass_cls.name}' Options must be a dataclass")
        if pass_cls.is_conversion() != conversion:
            method = "add_backend" if pass_cls.is_conversion() else "add_pass"
            raise PluginError(f"{who}: register '{pass_cls.name}' with registry.{method}")

    def _add_named(self, table: dict[str, Entry], name: str, obj: Callable, kind: str):
        if not callable(obj):
            raise PluginError(f"plugin '{self.current_plugin}': {kind} '{name}' is not callable")
        previous = table.get(name)
        if previous is not None and previous.obj is not obj:
            raise PluginError(f"{kind} '{name}' is registered twice: by '{previous.plugin}' and "
                              f"by '{self.current_plugin}'; rename one")
        table[name] = Entry(name, obj, self.current_plugin, kind)
        return obj


def _type_name(tp: type) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"


def _misplaced(name: str, ir: str, conversion: bool, found: list[Entry]) -> str:
    entry = found[0]
    irs = sorted({e.obj.ir for e in found})
    if entry.obj.is_conversion():
        if conversion:
            return (f"conversion '{name}' reads {', '.join(irs)}, but the pipeline holds {ir} at "
                    f"that point; put it right after a {irs[0]}(...) group")
        return (f"'{name}' converts {entry.obj.ir} to {entry.obj.output_kind()}: write it at the "
                f"top level of the pipeline, not inside {ir}(...)")
    if conversion:
        return f"'{name}' is a pass on {', '.join(irs)}: write it inside {irs[0]}(...)"
    return f"pass '{name}' runs on {', '.join(irs)}, not {ir}: move it into {irs[0]}(...)"
