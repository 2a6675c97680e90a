"""Which units to keep float: explicit names/globs, top-k, or greedy until a budget holds.

Sensitivity order: the worse the metric with only that unit quantized, the more sensitive; units
without that measurement are ordered by how much keeping them float helps.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from bevcc.errors import InputError
from bevcc.sensitivity.units import Unit


def sensitivity_order(units: list[Unit], table: dict[str, dict[str, float]]) -> list[Unit]:
    return sorted(units, key=lambda unit: _sensitivity_key(unit.name, table))


def ranked_names(table: dict[str, dict[str, float]]) -> list[str]:
    """The measured units' names, most sensitive first (the order of `sensitivity_order`), from
    a table alone: what reports read back from the pass's stats."""
    return sorted(table, key=lambda name: _sensitivity_key(name, table))


def _sensitivity_key(name: str, table: dict[str, dict[str, float]]):
    row = table.get(name, {})
    if "alone_quantized" in row:
        return (0, row["alone_quantized"], name)
    return (1, -row.get("alone_float", 0.0), name)


def match_units(units: list[Unit], patterns: list[str]) -> tuple[list[Unit], list[str]]:
    """Units whose name or any layer/quantizer name equals a pattern or matches it as a glob;
    never by substring. Returns (units, patterns that matched nothing)."""
    chosen, unused = [], []
    for pattern in patterns:
        hits = [
            u
            for u in units
            if any(
                n == pattern or fnmatch.fnmatchcase(n, pattern)
                for n in [u.name, *u.layers, *u.quantizers]
            )
        ]
        if not hits:
            unused.append(pattern)
        chosen += [u for u in hits if u not in chosen]
    return chosen, unused


def write_disable_list(path, units: list[Unit], reason: dict) -> None:
    from bevcc.atomic import write_text_atomic

    data = {
        "format": "bevcc-disable-list/1",
        "disable": [u.name for u in units],
        "layers": sorted({layer for u in units for layer in u.layers}),
        "decided_by": reason,
    }
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_disable_list(path) -> list[str]:
    return read_disable_file(path)[0]


def read_disable_file(path) -> tuple[list[str], dict]:
    """(unit names, the `decided_by` record) of a disable list. Replaying a list keeps its
    record: the decision is still the one that run made, so the list round-trips unchanged."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"disable list {path} is not readable JSON ({exc})") from exc
    names = data.get("disable") if isinstance(data, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f'disable list {path}: expected {{"disable": [names]}}')
    decided_by = data.get("decided_by")
    return names, decided_by if isinstance(decided_by, dict) else {}
