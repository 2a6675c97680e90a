"""A pass as the catalog and pipeline checks see it: its declaration, readable without importing it.

A pass module imports torch or onnx (seconds), but `bevcc passes`, `--help` and a misspelt
pipeline need only the name, IR, summary and options. So a pass can be registered by declaration:
`PassInfo(name=..., ir=..., summary=..., impl="package.module:Class", options=OptionsDataclass)`
with the options in a module of their own that imports nothing heavy. The class is imported when
a pipeline runs it, and then checked against its declaration, so the two cannot drift apart; a
class can also read them from it (`class P(Pass, declaration=INFO)`: one copy of each).
Registering a class (`registry.add_pass(PassClass)`) makes the same record from the class itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from dataclasses import dataclass, field
from typing import Any

from bevcc.errors import PluginError
from bevcc.pm.options import describe_options

# DECLARED: what a declaration states about its class; all must agree once the class is imported
# (a class declared with `declaration=` reads them from it: bevcc.pm.pass_base.Pass)
from bevcc.pm.pass_base import DECLARED, NoOptions, Pass

__all__ = ["IR_KINDS", "PassInfo"]

IR_KINDS = ("fx", "onnx", "libspconv")
NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class PassInfo:
    """name/ir/summary/options/produces/quantizes/types as on the Pass class; `impl` is where it
    lives."""

    name: str
    ir: str
    summary: str
    impl: str  # "package.module:QualifiedClassName"
    options: type = NoOptions
    produces: str | None = None
    quantizes: bool = False
    types: bool = False
    _cls: type[Pass] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, pass_cls: type[Pass]) -> PassInfo:
        """The declaration of an already imported class (it stays attached: nothing to import)."""
        info = cls(
            pass_cls.name,
            pass_cls.ir,
            pass_cls.summary,
            f"{pass_cls.__module__}:{pass_cls.__qualname__}",
            pass_cls.Options,
            pass_cls.produces,
            pass_cls.quantizes,
            pass_cls.types,
        )
        object.__setattr__(info, "_cls", pass_cls)
        return info

    @property
    def Options(self) -> type:
        return self.options

    def output_kind(self) -> str:
        return self.produces or self.ir

    def is_conversion(self) -> bool:
        return self.output_kind() != self.ir

    def is_loaded(self) -> bool:
        return self._cls is not None

    def same_pass(self, other: PassInfo) -> bool:
        """Registering this pass again (a module imported twice) rather than another one."""
        if self._cls is not None and other._cls is not None:
            return self._cls is other._cls
        return self.impl == other.impl

    def load(self) -> type[Pass]:
        """The Pass class, imported on first use and checked against this declaration."""
        if self._cls is None:
            pass_cls = _import(self.impl, f"pass '{self.name}' on {self.ir}")
            if not (isinstance(pass_cls, type) and issubclass(pass_cls, Pass)):
                raise PluginError(
                    f"pass '{self.name}' on {self.ir}: {self.impl} is not a bevcc.Pass subclass"
                )
            disagreement = self.disagreement(pass_cls)
            if disagreement:
                raise PluginError(
                    f"pass '{self.name}' on {self.ir}: {disagreement}; make the "
                    "declaration and the class agree"
                )
            object.__setattr__(self, "_cls", pass_cls)
        return self._cls

    def disagreement(self, pass_cls: type[Pass]) -> str | None:
        """What the class states differently from this declaration, or None."""
        for attr in DECLARED:
            declared, actual = getattr(self, attr), getattr(pass_cls, attr, None)
            if declared != actual:
                return f"{self.impl} has {attr} {actual!r}, its declaration {declared!r}"
        if pass_cls.Options is not self.options and describe_options(pass_cls) != describe_options(
            self
        ):
            return (
                f"{self.impl}'s options {pass_cls.Options.__qualname__} differ from the "
                f"declared {self.options.__qualname__}"
            )
        return None


def check_declaration(info: Any, who: str, label: str, conversion: bool) -> None:
    """The registration rules, for a class or a PassInfo; each problem is one PluginError line."""
    for attr in ("name", "summary", "ir"):
        if not isinstance(getattr(info, attr, None), str):
            raise PluginError(f"{who}: pass class {label} must set `{attr}` (a string)")
    if not NAME.fullmatch(info.name):
        raise PluginError(f"{who}: pass name '{info.name}' must be lower_snake_case")
    if info.ir not in IR_KINDS or info.output_kind() not in IR_KINDS:
        raise PluginError(
            f"{who}: pass '{info.name}' names an unknown IR; known: {', '.join(IR_KINDS)}"
        )
    if not dataclasses.is_dataclass(info.Options):
        raise PluginError(f"{who}: pass '{info.name}' Options must be a dataclass")
    if info.is_conversion() != conversion:
        method = "add_backend" if info.is_conversion() else "add_pass"
        raise PluginError(f"{who}: register '{info.name}' with registry.{method}")


def _import(ref: str, what: str) -> Any:
    module_name, _, qualname = ref.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(
            f"{what}: cannot import {ref} ({type(exc).__name__}: {exc}); "
            "reinstall the plugin that declares it"
        ) from exc
    return obj
