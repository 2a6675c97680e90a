"""A deployed-files evaluation split among processes by scene (`evaluate(..., jobs=N)`).

Scene by scene the files run on the CPU, where one process uses few of a machine's cores (small
tensors), so N processes each take every N-th scene. Each process rebuilds the PyTorch references
once, on the evaluation's device, runs its scenes through every set and sends back what a set run
collects: detections per scene and the parity sums. The parent puts the detections back in scene
order and adds up the sums, so the result is the one a single process computes (parity sums
differ only in float addition order). Processes are spawned, not forked: the parent may hold CUDA,
OpenMP or onnxruntime threads a fork would copy half-alive.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

from bevcc.deploy.evaluation import Parity


def run_sharded(directory: Path, config, scenes: int, device: str, jobs: int, stream) -> list:
    """The set runs of `evaluate`, filled by `jobs` processes."""
    from bevcc_bevfusion.deployed import set_runs

    runs = set_runs(directory, config, device, stream, references=False)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    print(
        f"  {scenes} scenes in {jobs} processes ({threads} CPU threads each); each rebuilds the "
        "PyTorch references first",
        file=stream,
        flush=True,
    )
    shards = [list(range(k, scenes, jobs)) for k in range(jobs)]
    work = [(directory, config, scenes, device, shard, threads) for shard in shards]
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs) as pool:
        results = pool.map(_shard, work)
    for run in runs:
        run.predictions = {key: [None] * scenes for key in run.predictions}
    for shard, collected in zip(shards, results, strict=True):
        for run, (predictions, exact, against_float, seconds) in zip(runs, collected, strict=True):
            for key, found in predictions.items():
                for index, detections in zip(shard, found, strict=True):
                    run.predictions[key][index] = detections
            _add(run.exact, exact)
            if run.against_float is not run.exact:
                _add(run.against_float, against_float)
            run.seconds += seconds
    for run in runs:
        print(
            f"  {run.label}: {scenes} scenes, {sum(run.seconds):.0f} s of process time",
            file=stream,
            flush=True,
        )
    return runs


def _shard(work) -> list:
    directory, config, scenes, device, shard, threads = work
    import torch
    from bevcc_bevfusion import deployed
    from bevcc_bevfusion.dataset import load_split
    from bevcc_bevfusion.deploy import small

    from bevcc.plugins import get_registry

    torch.set_num_threads(threads)
    deployed.ORT_THREADS = threads
    get_registry()  # bevcc's spconv CPU ops, as in the parent
    val = load_split("val", scenes, small.preset)  # cached by the parent
    runs = deployed.set_runs(Path(directory), config, device, sys.stderr)
    for index in shard:
        for run in runs:
            run.run(val[index])
    return [(run.predictions, run.exact, run.against_float, run.seconds) for run in runs]


def _add(total: dict, part: dict) -> None:
    """Per file, the (alone, chained) parity of `part` added into `total`."""
    for name, pair in part.items():
        for into, more in zip(total[name], pair, strict=True):
            _merge(into, more)


def _merge(into: Parity, more: Parity) -> None:
    into.max_abs = max(into.max_abs, more.max_abs)
    into.dot += more.dot
    into.got_sq += more.got_sq
    into.want_sq += more.want_sq
    into.err_sq += more.err_sq
