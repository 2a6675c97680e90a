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
# processes generating missing scenes: one per core, at most 16 (the scripts' --jobs default)
SCENE_JOBS = min(os.cpu_count() or 1, 16)


def add_jobs_argument(parser) -> None:
    """The scripts' `--jobs`: processes generating missing scenes."""
    parser.add_argument(
        "--jobs",
        type=int,
        default=SCENE_JOBS,
        help="processes generating missing scenes (default: one per core, at most 16)",
    )


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


def load_split(split: str, count: int, preset: Preset, jobs: int = 1) -> list[Scene]:
    """Scenes 0..count-1 of `split`, generated on a first run. `jobs` > 1 generates the missing
    ones in that many processes first (ray casting is single-threaded numpy; a full-size scene
    takes seconds), then loads them all from the cache in order: the same scenes either way."""
    if jobs > 1:
        generate(split, count, preset, jobs)
    scenes = track(range(count), f"{split} scenes", unit="scene")
    return [load_scene(split, i, preset) for i in scenes]


def generate(split: str, count: int, preset: Preset, jobs: int) -> None:
    """Write every missing scene of `split` below `count` to the cache, `jobs` processes at a
    time. Spawned, not forked: the parent may hold CUDA or OpenMP state a fork would copy."""
    missing = [
        i for i in range(count) if not (cache_dir(preset) / f"{split}-{i:05d}.npz").is_file()
    ]
    if not missing:
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(min(jobs, len(missing))) as pool:
        work = [(split, i, preset) for i in missing]
        done = pool.imap_unordered(_cache_one, work)
        for _ in track(
            done, f"{split} scenes ({jobs} processes)", total=len(missing), unit="scene"
        ):
            pass


def _cache_one(work: tuple[str, int, Preset]) -> None:
    load_scene(*work)  # writes the cache file; the parent reads it back
