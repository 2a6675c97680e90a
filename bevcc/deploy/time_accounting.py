"""Where a set compile's time went, every second of it: each file's `seconds` split by phase
(bevcc.compiler.TIME_KEYS: load, trace, passes, export, write, other), and the set's, for
report.json and report.md. `other` is what no phase covers, and stays near 0: a large one
means some work is timed nowhere (tests/test_compile_set.py holds it to that)."""

from __future__ import annotations

from bevcc.compiler import TIME_KEYS


def file_time(compile_time: dict[str, float], lint_seconds: float, seconds: float) -> dict:
    """A file's `time`: its compile's phases, with reading the written file back and linting it
    for the report counted as write; `other` is the rest of `seconds`."""
    phases = {key: compile_time.get(key, 0.0) for key in TIME_KEYS if key != "other"}
    phases["write"] += lint_seconds
    phases["other"] = max(seconds - sum(phases.values()), 0.0)
    return {key: round(value, 3) for key, value in phases.items()}


def set_time(file_times: list[dict], seconds: float) -> dict:
    """A set's `time`: its files' phases summed; `other` adds what passed between them."""
    phases = {key: sum(t[key] for t in file_times) for key in TIME_KEYS}
    phases["other"] += max(seconds - sum(phases.values()), 0.0)
    return {key: round(value, 3) for key, value in phases.items()}


def time_text(time: dict) -> str:
    """`load 5.8 s, trace 0.4 s, passes 92.4 s, export 8.9 s, write 0.3 s, other 0.0 s`"""
    return ", ".join(f"{key} {time[key]:.1f} s" for key in TIME_KEYS)
