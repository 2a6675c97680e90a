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

Lines come one every LINE_INTERVAL seconds while a task is open and never more often, so one
long batch or a long phase still shows the process is alive. A small child process writes them
from snapshots of the stack (bevcc/progress_lines.py), so that C code holding the GIL cannot
hold them back; where none can start, a thread does. The bar is the same text on one terminal
line (a loop's part drawn by tqdm), redrawn every BAR_INTERVAL by a thread. Only rank 0 of a
torchrun job reports, and a forked child never does.

Importing this module imports nothing heavy (tqdm only once a bar is drawn): `bevcc --help`
stays fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bevcc import progress_lines as text
from bevcc.errors import UsageError

__all__ = ["ENV", "INTERVAL_ENV", "MODES", "configure", "paused", "step", "track"]

ENV = "BEVCC_PROGRESS"
INTERVAL_ENV = "BEVCC_PROGRESS_INTERVAL"  # seconds between two lines: a quiet CI log sets 30
MODES = ("auto", "on", "lines", "off")
LINE_INTERVAL = 5.0  # seconds between two lines unless INTERVAL_ENV says otherwise
BAR_INTERVAL = 0.5  # seconds between two redraws of the bar, and the thread's snapshots
SEND_INTERVAL = 0.1  # a loop's counts reach the printer at most this often (one write each)

_LEN = object()  # track's default total: len(items), when it has one
_STARTED = time.monotonic()  # the "+35.2s" of a line: seconds since bevcc was imported


class _Task:
    def __init__(self, label: str, total: int | None, unit: str | None, background: bool):
        self.label, self.total, self.unit = label, total, unit
        self.background = background  # shown only while nothing is open inside it
        self.count = 0
        self.started = time.monotonic()

    def snapshot(self) -> list:
        """The task as bevcc/progress_lines.py reads it."""
        return [self.label, self.total, self.unit, self.count, self.started, self.background]


class _Reporter:
    """The open tasks, and what shows them; one per process."""

    def __init__(self):
        self.lock = threading.RLock()
        self.stack: list[_Task] = []
        self.mode: str | None = None  # resolved: "bar", "lines" or "off"
        self.line_interval: float | None = None  # INTERVAL_ENV or LINE_INTERVAL, read at start
        self.thread: threading.Thread | None = None
        self.wake = threading.Event()
        self.printer: _LinePrinter | None = None
        self.dirty = False  # the printer's snapshot is behind a count
        self.sent = 0.0  # when the printer got its last snapshot
        self.last_line = 0.0  # of the lines the thread writes (no printer)
        self.drawn = False  # a bar is on the terminal line now
        self.pause_depth = 0

    # ---- mode --------------------------------------------------------------------------------
    def resolved(self) -> str:
        if self.mode is None:
            self.mode = _resolve(os.environ.get(ENV, "auto") or "auto", f"{ENV}")
        return self.mode

    def start(self) -> None:
        """What the mode needs running: the printer for lines, the thread for both."""
        if self.resolved() == "off":
            return
        if self.line_interval is None:
            self.line_interval = _interval_from_env()
        if self.mode == "lines" and self.printer is None:
            self.printer = _LinePrinter.start(self.line_interval)
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="bevcc-progress", daemon=True)
            self.thread.start()

    # ---- the stack ---------------------------------------------------------------------------
    def push(self, task: _Task) -> None:
        with self.lock:
            if not self.stack:
                self.last_line = time.monotonic()  # a line one interval after work starts
            self.stack.append(task)
            self.start()
            self.changed()
        if self.mode == "bar":
            self.wake.set()  # draw the new task now

    def pop(self, task: _Task) -> None:
        with self.lock:
            if task in self.stack:
                del self.stack[self.stack.index(task) :]
            if self.mode == "bar" and not self._bar_tasks():
                self._clear()  # whatever is printed between tasks starts on a clean line
            self.changed()

    def counted(self) -> None:
        """A loop took one more item: the printer hears of it at once, or (a fast loop) within
        BAR_INTERVAL, from the thread."""
        if self.printer is not None and time.monotonic() - self.sent < SEND_INTERVAL:
            self.dirty = True
        else:
            self.changed()

    def changed(self) -> None:
        """Lines mode: send the printer the stack; without a printer, write the line that is
        due (the working thread asks too: GIL-holding C code can keep the thread past its
        time)."""
        if self.mode != "lines":
            return
        with self.lock:
            if self.printer is not None:
                self.dirty, self.sent = False, time.monotonic()
                snapshot = [t.snapshot() for t in self.stack]
                if self.printer.send(snapshot, self.pause_depth > 0):
                    return
                self.printer = None  # it is gone: the thread writes the lines from now on
            now = time.monotonic()
            if now - self.last_line >= self.line_interval - 1e-3:
                self.last_line = now
                if self.stack and not self.pause_depth:
                    snapshot = [t.snapshot() for t in self.stack]
                    sys.stderr.write(text.line(text.status(snapshot, now), now, _STARTED))
                    sys.stderr.flush()

    # ---- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self.lock:
                if self.mode == "lines" and self.printer is None:
                    wait = self.last_line + self.line_interval - time.monotonic()
                else:
                    wait = BAR_INTERVAL
            self.wake.wait(max(wait, 0.0))
            self.wake.clear()
            with self.lock:
                if self.mode == "off":
                    return
                if self.mode == "bar":
                    self._draw(time.monotonic())
                elif self.printer is None or self.dirty:
                    self.changed()

    # ---- the bar -----------------------------------------------------------------------------
    def _bar_tasks(self) -> list[list]:
        shown = text.visible([t.snapshot() for t in self.stack])
        return [] if all(t[text.BACKGROUND] for t in shown) else shown

    def _draw(self, now: float) -> None:
        shown = [] if self.pause_depth else self._bar_tasks()
        if not shown:
            return
        width = max(shutil.get_terminal_size((100, 20)).columns - 1, 20)
        *outer, inner = shown
        outer_text = [text.task_text(t, False, now) for t in outer]
        if inner[text.UNIT] is None or inner[text.TOTAL] is None:  # nothing to fill
            status = " > ".join([*outer_text, text.task_text(inner, True, now)])
        else:
            from tqdm import tqdm  # a bar is being drawn: the one place tqdm is imported

            status = tqdm.format_meter(
                inner[text.COUNT],
                inner[text.TOTAL],
                now - inner[text.STARTED],
                ncols=width,
                prefix=" > ".join([*outer_text, inner[text.LABEL]]),
                unit=inner[text.UNIT],
            )
        sys.stderr.write("\r" + status[:width] + "\x1b[K")
        sys.stderr.flush()
        self.drawn = True

    def _clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.drawn = False


class _LinePrinter:
    """The child process that writes the lines (bevcc/progress_lines.py), fed snapshots."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.fd = process.stdin.fileno()
        os.set_blocking(self.fd, False)  # a printer that lags drops a snapshot, never blocks

    @classmethod
    def start(cls, interval: float) -> _LinePrinter | None:
        """None where it cannot start (no interpreter to run, stderr not a file): the thread
        writes the lines then."""
        try:
            out = sys.stderr.fileno()
            source = Path(text.__file__).read_text()
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", source]
                + [str(out), str(interval), repr(_STARTED), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                pass_fds=(out,),
            )
        except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
            return None
        try:
            return cls(process)
        except (OSError, AttributeError):  # a pipe that cannot be made non-blocking
            process.kill()
            return None

    def send(self, stack: list[list], paused: bool) -> bool:
        """The stack as it is now; False once the printer is gone."""
        data = json.dumps({"stack": stack, "paused": paused}).encode() + b"\n"
        try:
            if len(data) <= 4096:  # larger writes to a pipe may land in pieces: drop them
                os.write(self.fd, data)
            return True
        except BlockingIOError:  # its pipe is full: the next snapshot says it all again
            return True
        except OSError:
            return False


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


def _interval_from_env() -> float:
    value = os.environ.get(INTERVAL_ENV, "")
    if not value:
        return LINE_INTERVAL
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0.1 <= seconds <= 3600:
        raise UsageError(
            f"{INTERVAL_ENV}={value!r}: give the seconds between two progress lines, "
            "a number from 0.1 to 3600 (default 5)"
        )
    return seconds


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty()) and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _rank() -> str:
    """torchrun sets RANK in every process it starts."""
    return os.environ.get("RANK", "0") or "0"


_reporter = _Reporter()


def _after_fork_in_child() -> None:
    # a forked child (onnx shape inference, data loaders) never reports, nor feeds the printer:
    # its parent does. One that runs a command of its own (bevcc.testing.run_bevcc) configures a
    # reporter again, and its lines count the seconds from its start, as a fresh process's do.
    global _reporter, _STARTED
    _reporter = _Reporter()
    _reporter.mode = "off"
    _STARTED = time.monotonic()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- the API ------------------------------------------------------------------------------------
def configure(mode: str | None = None, *, line_interval: float | None = None) -> str:
    """Choose the mode (None: BEVCC_PROGRESS, else auto) for this process and return the one in
    effect ("bar", "lines" or "off"). An unknown mode is a UsageError. `line_interval` (for
    tests; else BEVCC_PROGRESS_INTERVAL, else 5 s) applies to lines from the first task on: call
    this before any."""
    reporter = _reporter
    with reporter.lock:
        # read here, not at the first task, so that a bad BEVCC_PROGRESS_INTERVAL stops the
        # command before it works
        reporter.line_interval = line_interval or reporter.line_interval or _interval_from_env()
        where = "--progress" if mode is not None else ENV
        reporter.mode = _resolve(mode or os.environ.get(ENV, "auto") or "auto", where)
        if reporter.stack:
            reporter.start()
    reporter.wake.set()
    return reporter.mode


@contextmanager
def step(
    label: str, index: int | None = None, count: int | None = None, *, background: bool = False
) -> Iterator[None]:
    """A phase of work: `label`, or `label (index/count)`. `background`: a step that is shown
    only while nothing runs inside it (a command's whole run)."""
    name = f"{label} ({index}/{count})" if index is not None and count is not None else label
    task = _Task(name, None, None, background)
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
    one; None: unknown) `unit`s. `enabled=False` yields them without reporting (e.g. on the
    ranks other than 0 of a job that decides that itself).

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
            reporter.counted()
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
        reporter.changed()
    try:
        yield
    finally:
        with reporter.lock:
            reporter.pause_depth -= 1
            reporter.changed()
        reporter.wake.set()
