"""The text of bevcc's progress, and the process that writes its timestamped lines.

bevcc/progress.py keeps the stack of open tasks and sends snapshots of it here. A task is a
list [label, total, unit, count, started, background]: `unit` None for a phase (a step), total
None when the loop's length is unknown, `started` a time.monotonic() value (one clock for every
process of the machine), `background` for a task shown only while nothing runs inside it.

The lines come from a child process running this file (standard library only, started with
`python -I -S -c <this source>`), not from a thread of the compiler: C code that holds the GIL
for seconds (torch's and onnx's imports, a long spconv call on a loaded machine) would stop a
thread, and CI logs and users would see nothing for as long. The child reads snapshots on its
stdin, writes a line every INTERVAL seconds while a task is open, and ends when its stdin closes
or its parent is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time

LABEL, TOTAL, UNIT, COUNT, STARTED, BACKGROUND = range(6)


def plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "ch", "sh", "x")) else "s")


def duration(seconds: float) -> str:
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def loop_text(count: int, total: int | None, unit: str, elapsed: float) -> str:
    """`12/40 evals, 2.0 s/eval, ETA 56s`: done, rate, and the time left at that rate."""
    done = f"{count}/{total} {plural(unit)}" if total is not None else f"{count} {plural(unit)}"
    if count == 0:
        return f"{done}, the first running for {duration(elapsed)}"
    rate = elapsed / count
    text = f"{done}, {rate:.3g} s/{unit}"
    if total is not None and total >= count:
        text += f", ETA {duration(rate * (total - count))}"
    return text


def task_text(task: list, innermost: bool, now: float) -> str:
    """The innermost task in full (a phase's time so far; a loop's count, rate and ETA), one
    that holds others by its name (and which of a loop's items is running)."""
    if task[UNIT] is None:  # a phase: how long it has run, when it is the one running
        return f"{task[LABEL]} ({duration(now - task[STARTED])})" if innermost else task[LABEL]
    if not innermost:
        of = f"/{task[TOTAL]}" if task[TOTAL] is not None else ""
        return f"{task[LABEL]} {task[COUNT] + 1}{of}"
    elapsed = now - task[STARTED]
    return f"{task[LABEL]}: {loop_text(task[COUNT], task[TOTAL], task[UNIT], elapsed)}"


def visible(stack: list[list]) -> list[list]:
    """The tasks a status names: background ones only while nothing runs inside them."""
    return [t for i, t in enumerate(stack) if not t[BACKGROUND] or i == len(stack) - 1]


def status(stack: list[list], now: float) -> str:
    """`camera.backbone (1/5) > fx(sensitivity_disable) > sensitivity: 12/40 evals, ...`"""
    shown = visible(stack)
    return " > ".join(task_text(t, i == len(shown) - 1, now) for i, t in enumerate(shown))


def line(text: str, now: float, started: float) -> str:
    """One progress line: wall clock, seconds since `started`, the status."""
    return f"bevcc {time.strftime('%H:%M:%S')} +{now - started:.1f}s {text}\n"


# ---- the line-writing process -------------------------------------------------------------------
def serve(out_fd: int, interval: float, started: float, parent: int) -> None:
    """Read snapshots ({"stack": [...], "paused": bool} per line) from stdin; write a line to
    `out_fd` every `interval` seconds while a task is open (the first one interval after work
    starts); return when stdin closes or `parent` is no longer this process's parent."""
    state = {"stack": [], "paused": False, "open": True}
    changed = threading.Condition()
    last_line = [time.monotonic()]

    def read() -> None:
        for raw in sys.stdin.buffer:
            try:
                snapshot = json.loads(raw)
            except ValueError:
                continue
            with changed:
                if snapshot["stack"] and not state["stack"]:
                    last_line[0] = time.monotonic()  # work starts: a line one interval on
                state["stack"], state["paused"] = snapshot["stack"], snapshot["paused"]
        with changed:
            state["open"] = False
            changed.notify()

    threading.Thread(target=read, daemon=True).start()
    with changed:
        while state["open"] and os.getppid() == parent:
            changed.wait(max(last_line[0] + interval - time.monotonic(), 0.0))
            now = time.monotonic()
            if not state["open"] or now - last_line[0] < interval - 1e-3:
                continue
            last_line[0] = now
            if state["stack"] and not state["paused"]:
                try:
                    os.write(out_fd, line(status(state["stack"], now), now, started).encode())
                except OSError:  # stderr is gone: nobody to tell
                    return


if __name__ == "__main__":  # python -I -S -c <this source> OUT_FD INTERVAL STARTED PARENT_PID
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches the whole process group
        serve(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
