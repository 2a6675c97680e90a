"""Scenes by split, cached on disk (generation is deterministic, so the cache only saves time)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from bevcc_bevfusion.presets import Preset
from bevcc_bevfusion.scenes import Scene, scene

from bevcc.progress import track

VAL_SCENES = 300
CALIB_SCENES = 32


def cache_dir(preset: Preset) -> Path:
    root = Path(os.environ.get("BEVCC_CACHE", Path.home() / ".cache" / "bevcc"))
    return root / "bevfusion-scenes" / preset.name


def load_scene(split: str, index: int, preset: Preset) -> Scene:
    path = cache_dir(preset) / f"{split}-{index:05d}.npz"
    if path.is_file():
        with np.load(path) as data:
            return Scene(**{key: data[key] for key in data.files})
    result = scene(split, index, preset)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(partial, **vars(result))
    partial.replace(path)  # whole files only: parallel runs may share the cache
    return result


def load_split(split: str, count: int, preset: Preset) -> list[Scene]:
    scenes = track(range(count), f"{split} scenes", unit="scene")  # generated on a first run
    return [load_scene(split, i, preset) for i in scenes]
