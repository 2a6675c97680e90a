"""Progress of long work on stderr: the one facility every long loop and phase reports through
(set files, passes, calibration batches, sensitivity evaluations, evaluation scenes, and the
phases between loops: load, trace, export, write).

Work is a stack of open tasks: `step(label)` for a phase, `track(iterable, label)` for a loop.
What the user sees depends on the mode (`--progress MODE` on the commands, or BEVCC_PROGRESS):

    auto   (default) a status bar on a terminal; timestamped lines where CI is set (CI=true, as
           GitHub Actions, GitLab CI and most CI services set it); nothing otherwise (pipes,
           captured output, `docker run` without -t)
    on     a status bar on a terminal, timestamped lines otherwise
    lines  timestamped lines, even on a terminal (a log through `tee`)
    off    nothing

A line names the open tasks, outermost first, with a loop's count, rate and estimate:

    bevcc 12:03:04 +35.2s camera.backbone (1/5) > fx(sensitivity_disable) > sensitivity: 12/40 evals, 2.0 s/eval, ETA 56s

Lines come from a background thread, one every LINE_INTERVAL seconds while a task is open and
never more often, so one long batch or a long phase still shows the process is alive. The bar is
the same text on one terminal line (a loop's part drawn by tqdm), redrawn every BAR_INTERVAL.
Only rank 0 of a torchrun job reports, and a forked child never does.

Importing this module imports nothing heavy (tqdm only once a bar is drawn): `bevcc --help`
stays fast.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from bevcc.errors import UsageError

__all__ = ["ENV", "MODES", "configure", "paused", "step", "track"]

ENV = "BEVCC_PROGRESS"
MODES = ("auto", "on", "lines", "off")
LINE_INTERVAL = 5.0  # seconds between two lines
BAR_INTERVAL = 0.5  # seconds between two redraws of the bar

_LEN = object()  # track's default total: len(items), when it has one
_STARTED = time.monotonic()  # the "+35.2s" of a line: seconds since bevcc was imported


class _Task:
    def __init__(self, label: str, total: int | None, unit: str | None, background: bool):
        self.label, self.total, self.unit = label, total, unit
        self.background = background  # shown only while nothing is open inside it
        self.count = 0
        self.started = time.monotonic()

    def text(self, innermost: bool, now: float) -> str:
        if self.unit is None:  # a phase: how long it has run, when it is the one running
            return f"{self.label} ({_duration(now - self.started)})" if innermost else self.label
        return f"{self.label}: {_loop_text(self.count, self.total, self.unit, now - self.started)}"


class _Reporter:
    """The open tasks and the thread that shows them; one per process."""

    def __init__(self):
        self.lock = threading.RLock()
        self.stack: list[_Task] = []
        self.mode: str | None = None  # resolved: "bar", "lines" or "off"
        self.line_interval = LINE_INTERVAL
        self.thread: threading.Thread | None = None
        self.wake = threading.Event()
        self.last_line = 0.0
        self.drawn = False  # a bar is on the terminal line now
        self.pause_depth = 0

    # ---- mode --------------------------------------------------------------------------------
    def resolved(self) -> str:
        if self.mode is None:
            self.mode = _resolve(os.environ.get(ENV, "auto") or "auto", f"{ENV}")
        return self.mode

    # ---- the stack ---------------------------------------------------------------------------
    def push(self, task: _Task) -> None:
        with self.lock:
            if not self.stack:
                self.last_line = time.monotonic()  # a line one interval after work starts
            self.stack.append(task)
            if self.resolved() != "off":
                self._ensure_thread()
            self.line_if_due()
        if self.mode == "bar":
            self.wake.set()  # draw the new task now

    def pop(self, task: _Task) -> None:
        with self.lock:
            if task in self.stack:
                del self.stack[self.stack.index(task) :]
            if self.mode == "bar" and not self._visible():
                self._clear()  # whatever is printed between tasks starts on a clean line
            self.line_if_due()

    def line_if_due(self) -> None:
        """In lines mode, the line that is due, if one is. The thread writes them; the work's
        own thread asks too, at each task and count, because C code that holds the GIL (torch's
        import, a long native call) can keep the thread waiting past its time."""
        if self.mode != "lines":
            return
        with self.lock:
            now = time.monotonic()
            if now - self.last_line >= self.line_interval - 1e-3:
                self.last_line = now
                if self.stack and not self.pause_depth:
                    _write_line(self.text(now), now)

    def _visible(self) -> list[_Task]:
        shown = [
            t for i, t in enumerate(self.stack) if not t.background or i == len(self.stack) - 1
        ]
        return [] if self.mode == "bar" and all(t.background for t in shown) else shown

    def text(self, now: float) -> str:
        shown = self._visible()
        return " > ".join(t.text(i == len(shown) - 1, now) for i, t in enumerate(shown))

    # ---- output ------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="bevcc-progress", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while True:
            interval = BAR_INTERVAL if self.mode == "bar" else self.line_interval
            with self.lock:
                wait = interval if self.mode == "bar" else self.last_line + interval
                if self.mode != "bar":
                    wait -= time.monotonic()
            self.wake.wait(max(wait, 0.0))
            self.wake.clear()
            with self.lock:
                if self.mode == "off":
                    return
                if self.mode == "bar":
                    self._draw(time.monotonic())
                else:
                    self.line_if_due()

    def _draw(self, now: float) -> None:
        if self.pause_depth:
            return
        shown = self._visible()
        if not shown:
            return
        width = max(shutil.get_terminal_size((100, 20)).columns - 1, 20)
        *outer, inner = shown
        outer_text = [t.text(False, now) for t in outer]
        if inner.unit is None or inner.total is None:  # nothing to fill: the line's text
            line = " > ".join([*outer_text, inner.text(True, now)])
        else:
            from tqdm import tqdm  # a bar is being drawn: the one place tqdm is imported

            line = tqdm.format_meter(
                inner.count,
                inner.total,
                now - inner.started,
                ncols=width,
                prefix=" > ".join([*outer_text, inner.label]),
                unit=inner.unit,
            )
        stream = sys.stderr
        stream.write("\r" + line[:width] + "\x1b[K")
        stream.flush()
        self.drawn = True

    def _clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.drawn = False


def _write_line(text: str, now: float) -> None:
    clock = time.strftime("%H:%M:%S")
    sys.stderr.write(f"bevcc {clock} +{now - _STARTED:.1f}s {text}\n")
    sys.stderr.flush()


def _resolve(mode: str, where: str) -> str:
    if mode not in MODES:
        raise UsageError(f"{where}: unknown progress mode '{mode}'; use one of {', '.join(MODES)}")
    if mode == "off" or _rank() != "0":
        return "off"
    if mode == "lines":
        return "lines"
    terminal = _is_terminal(sys.stderr)
    if terminal:
        return "bar"
    if mode == "on" or os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        return "lines"
    return "off"


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty()) and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _rank() -> str:
    """torchrun sets RANK in every process it starts."""
    return os.environ.get("RANK", "0") or "0"


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "ch", "sh", "x")) else "s")


def _duration(seconds: float) -> str:
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


def _loop_text(count: int, total: int | None, unit: str, elapsed: float) -> str:
    done = f"{count}/{total} {_plural(unit)}" if total is not None else f"{count} {_plural(unit)}"
    if count == 0:
        return f"{done}, the first running for {_duration(elapsed)}"
    rate = elapsed / count
    text = f"{done}, {rate:.3g} s/{unit}"
    if total is not None and total >= count:
        text += f", ETA {_duration(rate * (total - count))}"
    return text


_reporter = _Reporter()


def _after_fork_in_child() -> None:
    # a forked child (onnx shape inference, data loaders) never reports; its parent does
    global _reporter
    _reporter = _Reporter()
    _reporter.mode = "off"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- the API ------------------------------------------------------------------------------------
def configure(mode: str | None = None, *, line_interval: float | None = None) -> str:
    """Choose the mode (None: BEVCC_PROGRESS, else auto) for this process and return the one in
    effect ("bar", "lines" or "off"). An unknown mode is a UsageError."""
    reporter = _reporter
    with reporter.lock:
        if line_interval is not None:
            reporter.line_interval = line_interval
        where = "--progress" if mode is not None else ENV
        reporter.mode = _resolve(mode or os.environ.get(ENV, "auto") or "auto", where)
        if reporter.stack and reporter.mode != "off":
            reporter._ensure_thread()
    reporter.wake.set()
    return reporter.mode


@contextmanager
def step(
    label: str, index: int | None = None, count: int | None = None, *, background: bool = False
) -> Iterator[None]:
    """A phase of work: `label`, or `label (index/count)`. `background`: a step that is shown
    only while nothing runs inside it (a command's whole run)."""
    text = f"{label} ({index}/{count})" if index is not None and count is not None else label
    task = _Task(text, None, None, background)
    reporter = _reporter
    reporter.push(task)
    try:
        yield
    finally:
        reporter.pop(task)


def track(
    items: Iterable, label: str, *, total=_LEN, unit: str = "item", enabled: bool = True
) -> Iterator:
    """`items`, counted as they are taken: a loop of `total` (default: len(items), when it has
    one; None: unknown) `unit`s. `enabled=False` yields them without reporting (e.g. on ranks other than 0).

    Write it in the `for` statement itself (`for x in track(...)`, or inside enumerate): a loop
    left by `break` then closes it at once, where one kept in a variable stays open (and shown)
    until the variable goes."""
    if not enabled:
        yield from items
        return
    if total is _LEN:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    task = _Task(label, total, unit, background=False)
    reporter = _reporter
    reporter.push(task)
    try:
        for item in items:
            yield item
            task.count += 1
            reporter.line_if_due()
    finally:
        reporter.pop(task)


@contextmanager
def paused() -> Iterator[None]:
    """Around output of one's own on stderr: the bar leaves the line, and no progress is
    written until the block ends."""
    reporter = _reporter
    with reporter.lock:
        reporter.pause_depth += 1
        reporter._clear()
    try:
        yield
    finally:
        with reporter.lock:
            reporter.pause_depth -= 1
        reporter.wake.set()
