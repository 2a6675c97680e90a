"""`bevcc compile --config FILE`: a TOML file holding the compile arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tomllib

from bevcc.errors import UsageError
from bevcc.loading import is_callable_ref

KEYS = ("input", "pipeline", "calib", "output")


@dataclass
class CompileConfig:
    input: str | None = None
    pipeline: str | None = None
    calib: str | None = None
    output: str | None = None


def load_config(path: str | Path) -> CompileConfig:
    """Read a config; relative paths in it are relative to the config file, not the shell."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise UsageError(f"config {path}: unknown key(s) {', '.join(unknown)}; known: "
                         f"{', '.join(KEYS)}")
    for key, value in data.items():
        if not isinstance(value, str):
            raise UsageError(f"config {path}: '{key}' must be a string")
    config = CompileConfig(**data)
    for key in ("input", "calib", "output"):
        value = getattr(config, key)
        if value is not None:
            setattr(config, key, _relative_to(path.parent, value))
    return config


def _relative_to(base: Path, value: str) -> str:
    if is_callable_ref(value):
        location, _, attr = value.rpartition(":")
        if not location.endswith(".py"):
            return value  # package.module:callable names no file
        return _resolve(base, location) + ":" + attr
    if "/" in value or Path(value).suffix:
        return _resolve(base, value)
    return value  # a registered model name


def _resolve(base: Path, location: str) -> str:
    return location if Path(location).is_absolute() else str(base / location)
