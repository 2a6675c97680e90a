"""Importing mmdet3d, building modules from config dicts and loading checkpoints, with one-line
errors that name the config and the fix."""

from __future__ import annotations

import copy
import traceback
from collections.abc import Mapping
from pathlib import Path

from bevcc.errors import InputError
from bevcc_mmdet3d import ext_standin

INSTALL_HINT = "install it with plugins/bevcc-mmdet3d/install.sh (see its README)"


def models_registry():
    """mmdet3d's MODELS registry with mmdet's and mmcv's layers registered (imports on first use)."""
    ext_standin.install()
    try:
        import mmdet.models  # noqa: F401 - registers ResNet and mmdet's layers
        import mmdet3d.models  # noqa: F401 - registers SECOND, SECONDFPN, SparseEncoder, ...
        from mmdet3d.registry import MODELS
    except ImportError as exc:
        raise InputError(f"bevcc-mmdet3d needs mmdet3d 1.4 ({exc}); {INSTALL_HINT}") from exc
    # Not mmdet3d's register_all_modules: it also imports the datasets (pyquaternion, ...).
    # Building from mmdet3d's own registry resolves unprefixed types in the mmdet3d scope.
    return MODELS


def build(config: Mapping, what: str = "model"):
    """Build an nn.Module from an mmdet3d config dict (the dict is not modified)."""
    if not isinstance(config, Mapping) or "type" not in config:
        raise InputError(
            f"{what} config {config!r} is not a dict with a 'type' key; write it as "
            "in an mmdet3d config, e.g. dict(type='SECOND', in_channels=256, ...)"
        )
    registry = models_registry()
    name = config["type"]
    if not isinstance(name, str) or registry.get(name) is None:
        raise InputError(
            f"{what} config: type {name!r} is not registered in mmdet3d's MODELS "
            "registry; check the spelling (e.g. 'SECOND', 'SECONDFPN', "
            "'SparseEncoder', 'mmdet.ResNet')"
        )
    try:
        return registry.build(copy.deepcopy(dict(config)))
    except Exception as exc:  # mmengine wraps constructor errors; keep the first line only
        message = _first_line(exc)
        raise InputError(
            f"{what} config type '{name}' failed to build: "
            f"{type(exc).__name__}: {message}; fix the config keys"
        ) from exc


def load_checkpoint(module, path, prefix: str = ""):
    """Load a checkpoint (.pth: a state_dict, or mmengine's {'state_dict': ...}) into `module`.

    `prefix` selects a sub-model's keys (e.g. 'pts_middle_encoder.') from a detector checkpoint.
    Missing or unexpected keys are an error: a half-loaded model compiles to wrong numbers.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path}: no such file; check the path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"checkpoint {path} is not a loadable torch file ({exc})") from exc
    state = payload.get("state_dict", payload) if isinstance(payload, Mapping) else None
    if not isinstance(state, Mapping):
        raise InputError(f"checkpoint {path} holds no state_dict (a mapping of tensors)")
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when not strict
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), exc)
        raise InputError(
            f"checkpoint {path} does not match {type(module).__name__}: {detail}; "
            "check the config or prefix"
        ) from exc
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"checkpoint {path}{f' (prefix {prefix!r})' if prefix else ''} does not "
            f"match {type(module).__name__}: missing {_few(result.missing_keys)}, "
            f"unexpected {_few(result.unexpected_keys)}; check the config or prefix"
        )
    return module


def _first_line(exc: BaseException) -> str:
    """The message, or for a bare `assert` in a constructor, the assert's source line."""
    root = exc
    while root.__cause__ or root.__context__:
        root = root.__cause__ or root.__context__
    frames = traceback.extract_tb(root.__traceback__)
    if isinstance(root, AssertionError) and frames and frames[-1].line:
        return f"{frames[-1].line} ({Path(frames[-1].filename).name}:{frames[-1].lineno})"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _few(keys) -> str:
    keys = list(keys)
    return (
        "none"
        if not keys
        else ", ".join(keys[:3]) + (f" (+{len(keys) - 3})" if len(keys) > 3 else "")
    )
