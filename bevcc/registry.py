"""The registry plugins fill: passes, backends (IR conversions) and named pipelines here, FX leaf
modules, metrics and models in its base (registry_runtime)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from bevcc.errors import PluginError, UsageError
from bevcc.pass_info import IR_KINDS, PassInfo, check_declaration
from bevcc.pm.pass_base import Pass
from bevcc.pm.pipeline import parse_pipeline
from bevcc.registry_runtime import PLURAL, Entry, RuntimeTables

__all__ = ["IR_KINDS", "LOCAL_PLUGIN", "Entry", "NamedPipeline", "PassEntry", "Registry"]

LOCAL_PLUGIN = "<local>"
# Pipeline names may hold hyphens (`default-fx`), which pass names may not, so a pipeline name
# never reads as a pass word.
_PIPELINE_NAME = re.compile(r"[a-z][a-z0-9_-]*")


@dataclass
class PassEntry:
    """A registered pass or backend: its declaration, and its class imported on first use."""

    info: PassInfo
    plugin: str
    kind: str  # "pass" | "backend"

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def obj(self) -> type[Pass]:
        """The Pass class (imports its module); `info` has everything else without importing."""
        try:
            return self.info.load()
        except PluginError as exc:
            raise PluginError(f"plugin '{self.plugin}': {exc}") from exc


@dataclass(frozen=True)
class NamedPipeline:
    name: str
    text: str  # canonical pipeline text
    summary: str


class Registry(RuntimeTables):
    """Handed to every plugin hook; holds everything contributed, keyed for lookup.

    Passes are kept as declarations (PassInfo) and imported when looked up to run, so listing
    them and checking a pipeline import no pass module.
    """

    def __init__(self, current_plugin: str = LOCAL_PLUGIN):
        super().__init__()
        self.current_plugin = current_plugin
        self.passes: dict[tuple[str, str], PassEntry] = {}  # (ir, name) -> PassEntry
        self.pipelines: dict[str, Entry] = {}  # name -> Entry(obj=NamedPipeline)

    # ---- registration (called from plugin hooks) ------------------------------------------------
    def add_pass(self, pass_cls: type[Pass] | PassInfo) -> type[Pass] | PassInfo:
        """Register an in-IR pass (a class, or a PassInfo declaration imported on use); returns
        its argument so it also works as a decorator."""
        return self._add_pass_entry(pass_cls, "pass", conversion=False)

    def add_backend(self, pass_cls: type[Pass] | PassInfo) -> type[Pass] | PassInfo:
        """Register a conversion (a top-level pipeline word such as `export`)."""
        return self._add_pass_entry(pass_cls, "backend", conversion=True)

    def add_pipeline(self, name: str, text: str, summary: str) -> str:
        """Register a named pipeline, e.g. what `bevcc compile` runs when given none. The text
        is parsed now; its words are checked when a command uses it."""
        who = f"plugin '{self.current_plugin}'"
        if not (isinstance(name, str) and _PIPELINE_NAME.fullmatch(name)):
            raise PluginError(
                f"{who}: pipeline name {name!r} must be lowercase letters, digits, '-' and '_'"
            )
        if not isinstance(summary, str) or not summary:
            raise PluginError(f"{who}: pipeline '{name}' needs a one-line summary")
        try:
            canonical = parse_pipeline(text).text()
        except UsageError as exc:
            raise PluginError(f"{who}: pipeline '{name}': {exc}") from None
        pipeline = NamedPipeline(name, canonical, summary)
        previous = self.pipelines.get(name)
        if previous is not None and previous.obj != pipeline:
            raise PluginError(
                f"pipeline '{name}' is registered twice: by '{previous.plugin}' and "
                f"by '{self.current_plugin}'; rename one"
            )
        self.pipelines[name] = Entry(name, pipeline, self.current_plugin, "pipeline")
        return name

    # ---- lookup ---------------------------------------------------------------------------------
    def lookup(self, name: str, ir: str, conversion: bool) -> type[Pass]:
        """The pass class `name` on `ir`, imported now; errors as for `pass_info`."""
        info = self.pass_info(name, ir, conversion)
        return self.passes[(info.ir, info.name)].obj

    def pass_info(self, name: str, ir: str, conversion: bool) -> PassInfo:
        """The declaration of pass `name` on `ir`, without importing it; an unknown name is one
        UsageError listing the closest names."""
        entry = self.passes.get((ir, name))
        if entry is not None and entry.info.is_conversion() == conversion:
            return entry.info
        elsewhere = [e.info for (i, n), e in self.passes.items() if n == name]
        if elsewhere:
            raise UsageError(_misplaced(name, ir, conversion, elsewhere))
        candidates = sorted(
            {
                n
                for (i, n), e in self.passes.items()
                if e.info.is_conversion() == conversion and (conversion or i == ir)
            }
        )
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
        where = "conversion" if conversion else f"{ir} pass"
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else f"known: {', '.join(candidates) or 'none'}"
        )
        raise UsageError(f"unknown {where} '{name}': {hint} (see `bevcc passes`)")

    def pipeline(self, name: str) -> str:
        """The text of the named pipeline `name`."""
        entry = self.pipelines.get(name)
        if entry is not None:
            return entry.obj.text
        known = sorted(self.pipelines)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known) or 'none'}"
        )
        raise UsageError(f"no named pipeline '{name}': {hint} (see `bevcc passes`)")

    def entries(self) -> list[PassEntry]:
        return sorted(self.passes.values(), key=lambda e: (e.info.ir, e.name))

    def contributions(self, plugin: str) -> dict[str, list[str]]:
        """What `plugin` added, by kind; deferred registrations by the names they declared."""
        out = self._runtime_contributions(plugin)
        for e in self.passes.values():
            if e.plugin == plugin:
                out.setdefault(PLURAL[e.kind], set()).add(f"{e.info.ir}:{e.name}")
        for e in self.pipelines.values():
            if e.plugin == plugin:
                out.setdefault(PLURAL[e.kind], set()).add(e.name)
        return {k: sorted(v) for k, v in sorted(out.items()) if v}

    def drop_plugin(self, plugin: str) -> None:
        """Remove what a plugin registered (used when its hook fails half-way)."""
        self.passes = {k: e for k, e in self.passes.items() if e.plugin != plugin}
        self.pipelines = {k: e for k, e in self.pipelines.items() if e.plugin != plugin}
        self._drop_runtime(plugin)

    # ---- helpers --------------------------------------------------------------------------------
    def _add_pass_entry(self, given: Any, kind: str, conversion: bool):
        who = f"plugin '{self.current_plugin}'"
        if isinstance(given, PassInfo):
            check_declaration(given, who, given.impl, conversion)
            info = given
        else:
            if not (isinstance(given, type) and issubclass(given, Pass)):
                raise PluginError(f"{who}: {given!r} is not a bevcc.Pass subclass")
            check_declaration(given, who, given.__qualname__, conversion)
            info = PassInfo.of(given)
        key = (info.ir, info.name)
        previous = self.passes.get(key)
        if previous is not None and not previous.info.same_pass(info):
            raise PluginError(
                f"pass '{info.name}' on {info.ir} is registered twice: by "
                f"'{previous.plugin}' and by '{self.current_plugin}'; rename one"
            )
        if previous is None or not previous.info.is_loaded():
            self.passes[key] = PassEntry(info, self.current_plugin, kind)
        return given


def _misplaced(name: str, ir: str, conversion: bool, found: list[PassInfo]) -> str:
    info = found[0]
    irs = sorted({i.ir for i in found})
    if info.is_conversion():
        if conversion:
            return (
                f"conversion '{name}' reads {', '.join(irs)}, but the pipeline holds {ir} at "
                f"that point; put it right after a {irs[0]}(...) group"
            )
        return (
            f"'{name}' converts {info.ir} to {info.output_kind()}: write it at the "
            f"top level of the pipeline, not inside {ir}(...)"
        )
    if conversion:
        return f"'{name}' is a pass on {', '.join(irs)}: write it inside {irs[0]}(...)"
    return f"pass '{name}' runs on {', '.join(irs)}, not {ir}: move it into {irs[0]}(...)"
