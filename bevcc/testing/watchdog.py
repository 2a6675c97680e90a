"""Run a long command in a test and end it only when it hangs, however slow the machine.

A wall-clock limit cannot tell a hung process from a slow one: on a busy machine the README's
main job ran past 30 minutes (3 on 2 idle cores). `run_watched` watches CPU time instead: the
command and every process it started (its process group) must use some CPU within each
`stall_seconds` window. A deadlock, a child that never answers or a rank waiting on a dead peer
uses none and is ended; a run that is merely starved of CPU still makes progress. `limit_seconds`
is the backstop for a loop that never ends. On a system without /proc, only the limit applies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def run_watched(
    args: list[str],
    *,
    stall_seconds: float | None,
    limit_seconds: float | None,
    **popen_kwargs,
) -> subprocess.CompletedProcess:
    """subprocess.run(args, capture_output=True, text=True, **popen_kwargs), except that it
    raises subprocess.TimeoutExpired (after killing the process group) when the group used no
    CPU for `stall_seconds`, or ran `limit_seconds` (None: no such check)."""
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: what it starts is watched and ended too
        **popen_kwargs,
    )
    try:
        return _watch(proc, args, stall_seconds, limit_seconds)
    except BaseException:  # Ctrl-C or a test's own failure: its session does not get the signal
        _kill_group(proc)
        raise


def _watch(proc, args, stall_seconds, limit_seconds) -> subprocess.CompletedProcess:
    start = time.monotonic()
    poll = max(0.05, min(5.0, (stall_seconds or 20.0) / 4))
    used, progressed = _group_cpu_seconds(proc.pid), start
    while True:
        try:
            out, err = proc.communicate(timeout=poll)
            return subprocess.CompletedProcess(args, proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        cpu = _group_cpu_seconds(proc.pid)
        if cpu is None or used is None or cpu > used:
            used, progressed = cpu, now
        stalled = (
            stall_seconds is not None and used is not None and now - progressed > stall_seconds
        )
        if stalled or (limit_seconds is not None and now - start > limit_seconds):
            _kill_group(proc)
            out, err = proc.communicate()
            why = f"no CPU used for {stall_seconds:.0f} s" if stalled else "limit reached"
            raise subprocess.TimeoutExpired(
                args, now - start, output=out, stderr=f"{err}\n[run_watched: {why}]"
            )


def _group_cpu_seconds(group: int) -> float | None:
    """CPU seconds used by the processes of a process group, the children they have reaped
    included; None where /proc cannot tell."""
    if not _PROC.is_dir():
        return None
    ticks = 0
    for stat in _PROC.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process ended while being read
            continue
        if int(fields[2]) == group:  # pgrp; then utime, stime, cutime, cstime
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / _TICKS


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group ended on its own meanwhile
        os.killpg(proc.pid, signal.SIGKILL)
