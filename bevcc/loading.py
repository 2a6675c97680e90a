"""Resolving `path/file.py:callable` and `package.module:callable` references."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from bevcc.errors import InputError

__all__ = ["load_callable"]


def is_callable_ref(text: str) -> bool:
    return ":" in text and not text.endswith(":") and not Path(text).exists()


def load_callable(ref: str, what: str):
    """Import the object named by `ref` ("file.py:name", "pkg.mod:name" or "pkg.mod:obj.attr")
    and check it is callable."""
    location, _, attr = ref.rpartition(":")
    if location.endswith(".py"):
        module = _import_file(Path(location), what)
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as exc:
            raise InputError(
                f"{what} '{ref}': cannot import module '{location}' ({exc}); check "
                "the name or install the package"
            ) from exc
    obj = module
    for part in attr.split("."):  # "module:obj.method" names a bound method of a module object
        owner, obj = obj, getattr(obj, part, None)
        if obj is None:
            names = ", ".join(
                n for n in dir(owner) if not n.startswith("_") and callable(getattr(owner, n))
            )[:200]
            where = location if owner is module else attr.rpartition(".")[0]
            raise InputError(f"{what} '{ref}': '{where}' has no '{part}' (it has: {names})")
    if not callable(obj):
        raise InputError(f"{what} '{ref}': '{attr}' is not callable")
    return obj


def _import_file(path: Path, what: str):
    if not path.is_file():
        raise InputError(f"{what}: no such file {path}; check the path")
    name = f"bevcc_user_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # Let the file import its siblings, as it would when run as a script.
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise InputError(f"{what}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.pop(0)
    sys.modules[name] = module
    return module


def call_user(fn, ref: str, what: str):
    try:
        return fn()
    except Exception as exc:
        raise InputError(f"{what} '{ref}' raised {type(exc).__name__}: {exc}") from exc
