"""Measure each unit: the metric with only that unit quantized and with only that unit float.

The IR-specific work is behind an evaluator (fx_eval.FxEvaluator switches TensorQuantizers,
onnx_eval.OnnxEvaluator runs onnxruntime on the file with units' Q/DQ removed): `batches`,
`reference` (float outputs, computed once), `metric`, and `score(quantized, except_units)`.
Results are appended to a JSONL file as they come, so an interrupted run resumes where it
stopped. Under torch.distributed (torchrun; gloo on CPU, nccl on GPUs) each rank measures its
share of the units and the results are gathered, so every rank ends with the same table.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Protocol

from bevcc.distributed import rank_and_world
from bevcc.progress import track

MODES = ("alone_quantized", "alone_float")


class Evaluator(Protocol):
    batches: list[dict]  # evaluation batches: input arrays (and labels for task metrics)
    reference: list  # the float model's outputs, one tuple of tensors per batch
    metric: object  # fn(outputs, reference, batches) -> float

    def score(self, quantized: bool = True, except_units=()) -> float:
        """The metric with every unit INT8 (`quantized`) or float, except `except_units`,
        which get the opposite."""


def measure(
    evaluator: Evaluator,
    units: list,
    modes=MODES,
    results_path=None,
    key: str = "",
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """{unit name: {mode: metric}} for every unit, resuming from `results_path`."""
    rank, world = rank_and_world()
    done = _resume(results_path, key, rank) if results_path else {}
    mine = [u for i, u in enumerate(units) if i % world == rank]
    todo = [(u, m) for u in mine for m in modes if m not in done.get(u.name, {})]
    for unit, mode in track(todo, "sensitivity", unit="eval", enabled=progress and rank == 0):
        value = evaluator.score(quantized=mode != "alone_quantized", except_units=[unit])
        done.setdefault(unit.name, {})[mode] = value
        if results_path:
            _append(results_path, rank, {"unit": unit.name, "mode": mode, "value": value})
    if world > 1:
        import torch

        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, done)
        merged: dict[str, dict[str, float]] = {}
        for part in gathered:
            for name, values in part.items():
                merged.setdefault(name, {}).update(values)
        done = merged
    return {u.name: done.get(u.name, {}) for u in units}


def run_key(ir_fingerprint: str, units: list, metric: str, batches: int, modes) -> str:
    """What a resumed result must match: the model, its units, the metric, the data size."""
    text = json.dumps([ir_fingerprint, [u.quantizers for u in units], metric, batches, list(modes)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _rank_path(path, rank: int) -> Path:
    path = Path(path)
    return path if rank == 0 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def _resume(path, key: str, rank: int) -> dict:
    path = _rank_path(path, rank)
    done: dict[str, dict[str, float]] = {}
    if not path.exists():
        _write_header(path, key)
        return done
    lines = path.read_text().splitlines()
    if not lines or json.loads(lines[0]).get("key") != key:
        _write_header(path, key)  # another model or setting: start over
        return done
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by an interruption: everything before it counts
        done.setdefault(row["unit"], {})[row["mode"]] = row["value"]
    return done


def _write_header(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key}) + "\n")


def _append(path, rank: int, row: dict) -> None:
    with open(_rank_path(path, rank), "a") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
