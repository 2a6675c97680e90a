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

        def unavailable(*args, **kwargs):
            raise CompiledOpUnavailable(
                f"mmcv op '{name}' is a compiled CUDA/C++ op that this install does not have "
                "(mmcv-lite with bevcc-mmdet3d's mmcv._ext stand-in); bevcc-mmdet3d builds and "
                "compiles models only: install a full mmcv build with ops to run it"
            )

        unavailable.__name__ = name
        unavailable.__qualname__ = f"{NAME}.{name}"
        return unavailable


def has_real_ext() -> bool:
    """Whether mmcv's folder holds a compiled `_ext` library (found without importing mmcv)."""
    spec = importlib.util.find_spec("mmcv")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(any(Path(folder).glob("_ext.*")) for folder in spec.submodule_search_locations)


def install() -> bool:
    """Put the stand-in in sys.modules if mmcv is installed without `_ext`; True if it is there."""
    module = sys.modules.get(NAME)
    if isinstance(module, _ExtStandIn):
        return True
    if module is not None or importlib.util.find_spec("mmcv") is None or has_real_ext():
        return False
    stand_in = _ExtStandIn(NAME, "bevcc-mmdet3d stand-in: compiled mmcv ops are unavailable")
    # loader=None: mmcv's check_ops_exist() (pkgutil.find_loader) then reports no compiled ops.
    stand_in.__spec__ = importlib.machinery.ModuleSpec(NAME, None)
    sys.modules[NAME] = stand_in
    return True


def is_installed() -> bool:
    return isinstance(sys.modules.get(NAME), _ExtStandIn)
