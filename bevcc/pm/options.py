"""Typed pass options: text from the pipeline converted to a pass's Options dataclass fields."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Literal

from bevcc.errors import UsageError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def type_name(tp: Any) -> str:
    """How an option type is shown to users (`bevcc passes`, error messages)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "|".join(m.value for m in tp)
    return getattr(tp, "__name__", str(tp))


def convert(text: str, tp: Any) -> Any:
    """Convert `text` to `tp`; raise ValueError with a reason if it does not fit."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(text, arg)
            except ValueError:
                continue
        raise ValueError(f"expected {type_name(tp)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if str(choice) == text:
                return choice
        raise ValueError(f"expected one of {', '.join(str(c) for c in choices)}")
    if tp is bool:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("expected true or false")
    if tp is int:
        try:
            return int(text, 0)
        except ValueError:
            raise ValueError("expected an integer (e.g. 3 or 0x10)") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number (e.g. 0.25 or 1e-3)") from None
    if tp is str:
        return text
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(text)
        except ValueError:
            raise ValueError(f"expected one of {type_name(tp)}") from None
    raise ValueError(f"options of type {type_name(tp)} cannot be set from pipeline text")


def build_options(pass_cls, given: list[tuple[str, str]]):
    """Instantiate `pass_cls.Options` from (key, text) pairs; every problem is one UsageError."""
    fields = {f.name: f for f in dataclasses.fields(pass_cls.Options)}
    hints = typing.get_type_hints(pass_cls.Options)
    values: dict[str, Any] = {}
    for key, text in given:
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise UsageError(f"pass '{pass_cls.name}' has no option '{key}' (its options: {known})")
        if key in values:
            raise UsageError(f"pass '{pass_cls.name}': option '{key}' is given twice")
        try:
            values[key] = convert(text, hints[key])
        except ValueError as exc:
            raise UsageError(f"pass '{pass_cls.name}' option '{key}={text}': {exc}") from None
    try:
        return pass_cls.Options(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"pass '{pass_cls.name}' options: {exc}") from None


def describe_options(pass_cls) -> list[dict[str, Any]]:
    hints = typing.get_type_hints(pass_cls.Options)
    rows = []
    for f in dataclasses.fields(pass_cls.Options):
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, enum.Enum):
            default = default.value
        rows.append(
            {
                "name": f.name,
                "type": type_name(hints[f.name]),
                "default": default,
                "help": f.metadata.get("help", ""),
            }
        )
    return rows
