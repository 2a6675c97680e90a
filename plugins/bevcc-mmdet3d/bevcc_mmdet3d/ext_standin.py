"""An honest stand-in for mmcv's compiled `mmcv._ext`, so mmdet3d imports on mmcv-lite.

mmcv-lite ships no compiled ops, yet `mmcv.ops` (imported by mmdet3d's layers) loads `mmcv._ext`
at import time and only checks that the named functions exist. The stand-in lets that import
succeed; every op in it raises when called, naming the op, so nothing runs silently wrong.
It is put in `sys.modules` (never written into mmcv's folder) and only when mmcv has no real
`_ext` library, so a full mmcv build is always preferred.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

NAME = "mmcv._ext"


class CompiledOpUnavailable(RuntimeError):
    """A compiled mmcv op was called on an install that has none (mmcv-lite)."""


class _ExtStandIn(types.ModuleType):
    """Any public attribute is an op that raises CompiledOpUnavailable when called."""

    def __getattr__(self, name: str):
        if name.startswith("_"):  # keep dunder probes (__path__, __file__, ...) honest
            raise AttributeError(name)
        module = self.__name__

        def unavailable(*args, **kwargs):
            owner = "mmcv" if module == NAME else module
            raise CompiledOpUnavailable(
                f"{owner} op '{name}' is a compiled CUDA/C++ op that this install does not "
                f"have ({module} is bevcc-mmdet3d's stand-in); bevcc-mmdet3d builds and "
                "compiles models only: build the ops to run it"
            )

        unavailable.__name__ = name
        unavailable.__qualname__ = f"{module}.{name}"
        return unavailable


def has_real_ext() -> bool:
    """Whether mmcv's folder holds a compiled `_ext` library (found without importing mmcv)."""
    spec = importlib.util.find_spec("mmcv")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(any(Path(folder).glob("_ext.*")) for folder in spec.submodule_search_locations)


def install(name: str = NAME) -> bool:
    """Put a stand-in for the compiled module `name` (mmcv's `_ext` unless told) in sys.modules
    where the real one is not built; True if a stand-in is there."""
    module = sys.modules.get(name)
    if isinstance(module, _ExtStandIn):
        return True
    if module is not None or _has_real(name):
        return False
    stand_in = _ExtStandIn(name, "bevcc-mmdet3d stand-in: compiled ops are unavailable")
    # loader=None: mmcv's check_ops_exist() (pkgutil.find_loader) then reports no compiled ops.
    stand_in.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = stand_in
    return True


def _has_real(name: str) -> bool:
    if name == NAME:
        return importlib.util.find_spec("mmcv") is None or has_real_ext()
    try:  # the module's package is importable (the caller put it on sys.path); the library?
        return importlib.util.find_spec(name) is not None
    except Exception:  # noqa: BLE001 - its package failed to import: not built
        return False


def is_installed(name: str = NAME) -> bool:
    return isinstance(sys.modules.get(name), _ExtStandIn)
