"""bevcc.progress, in processes of their own as a user meets it: timestamped lines at a bounded
rate (also through one long phase with no loop), a tqdm bar on a real terminal (a pty), silence
on a pipe unless asked for, and one error line for an unknown mode."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys

import pytest

from bevcc.testing import scaled_timeout
from tests.conftest import PROGRESS_LINE, run_bevcc

INTERVAL = 0.4

# a phase of 1.5 s with nothing counted in it, then a loop of 4 batches of 0.3 s (times `scale`)
_WORK = f"""
import sys, time
from bevcc import progress
mode, scale = sys.argv[1], float(sys.argv[2])
progress.configure(None if mode == "env" else mode, line_interval={INTERVAL})
with progress.step("camera", 1, 2):
    with progress.step("load"):
        time.sleep(1.5 * scale)
    for _ in progress.track(range(4), "calibrating", unit="batch"):
        time.sleep(0.3 * scale)
print("tqdm imported" if "tqdm" in sys.modules else "tqdm not imported")
time.sleep(1.0 * scale)  # nothing open: nothing to report
"""


def _env(extra=None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("BEVCC_PROGRESS", "CI")}
    return {**env, **(extra or {})}


def _start(mode: str, env_extra=None, scale: float = 1.0, **streams) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _WORK, mode, str(scale)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=streams.get("stderr", subprocess.PIPE),
        env=_env(env_extra),
        text=streams.get("text", True),
    )


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    stdout, stderr = proc.communicate(timeout=scaled_timeout(60))
    assert proc.returncode == 0, stderr
    return stdout, stderr


def _lines(stderr: str) -> list[tuple[float, str]]:
    found = []
    for line in stderr.splitlines():
        match = PROGRESS_LINE.match(line)
        assert match, f"not a progress line: {line!r}"
        found.append((float(match.group(1)), match.group(2)))
    return found


def test_lines_are_timestamped_named_and_rate_bounded():
    stdout, stderr = _finish(_start("lines"))
    lines = _lines(stderr)
    times = [t for t, _ in lines]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # one line per interval while work runs (2.7 s of it), never two closer than the interval
    assert 5 <= len(lines) <= 2.7 / INTERVAL + 1, stderr
    assert min(gaps) >= INTERVAL - 0.05, stderr
    assert max(gaps) <= INTERVAL + 0.5, stderr
    texts = [text for _, text in lines]
    # the long phase without a loop still shows, with its time so far
    assert any(re.fullmatch(r"camera \(1/2\) > load \(\d\.\ds\)", t) for t in texts), texts
    loop = [t for t in texts if "calibrating" in t]
    assert loop and all(t.startswith("camera (1/2) > calibrating: ") for t in loop), texts
    counted = [t for t in loop if not t.startswith("camera (1/2) > calibrating: 0/")]
    assert counted and all(
        re.search(r": [1-4]/4 batches, [\d.]+ s/batch, ETA [\d.]+s$", t) for t in counted
    ), texts
    assert stdout == "tqdm not imported\n"  # lines need no tqdm
    # nothing after the work ended (the last second of the process holds no open step)
    assert times[-1] <= times[0] + 2.7, stderr


# one regular-expression match that holds the GIL for about 2 s (the engine never lets go of it):
# `(a|aa)+b` on n a's backtracks through Fibonacci(n) ways, so 5 more a's cost 11 times more
_GIL_HOLDER = f"""
import re, time
from bevcc import progress
progress.configure("lines", line_interval={INTERVAL})
with progress.step("native"):
    n = 18
    while True:
        begin = time.monotonic()
        re.fullmatch(r"(a|aa)+b", "a" * n)
        if time.monotonic() - begin > 0.2:
            break
        n += 1
    begin = time.monotonic()
    re.fullmatch(r"(a|aa)+b", "a" * (n + 5))
    end = time.monotonic()
print(begin - progress._STARTED, end - progress._STARTED)
"""


def test_lines_keep_coming_while_c_code_holds_the_gil():
    """torch's and onnx's imports, or a long spconv call, hold the GIL for seconds on a loaded
    machine: the lines come from a process of their own and do not wait for it."""
    proc = subprocess.run(
        [sys.executable, "-c", _GIL_HOLDER],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=scaled_timeout(120),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    begin, end = map(float, proc.stdout.split())
    assert end - begin > 1.5, "the match was too short to tell"
    times = [t for t, _ in _lines(proc.stderr)]
    during = [begin] + [t for t in times if begin < t < end] + [end]
    assert max(b - a for a, b in itertools.pairwise(during)) <= INTERVAL + 0.5, proc.stderr


def test_quiet_on_a_pipe_unless_asked_or_under_ci():
    cases = {  # environment -> does a pipe get lines (auto mode, stderr a pipe)
        (): False,
        (("BEVCC_PROGRESS", "on"),): True,
        (("CI", "true"),): True,  # what CI services set
        (("CI", "true"), ("BEVCC_PROGRESS", "off")): False,
        (("BEVCC_PROGRESS", "lines"), ("RANK", "1")): False,  # torchrun: rank 0 only
    }
    running = {case: _start("env", dict(case), scale=0.6) for case in cases}  # side by side
    for case, shows in cases.items():
        _, stderr = _finish(running[case])
        assert bool(_lines(stderr)) == shows, (case, stderr)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pty")
def test_a_terminal_gets_a_tqdm_bar_that_it_clears():
    main, child = os.openpty()
    proc = _start("env", {"TERM": "xterm", "COLUMNS": "120"}, stderr=child, text=False)
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    stdout, _ = proc.communicate(timeout=scaled_timeout(60))
    os.close(main)
    assert proc.returncode == 0
    text = out.decode()
    assert "bevcc " not in text  # no lines on a terminal: the bar
    draws = [d for d in text.split("\r") if d]
    assert any(d.startswith("camera (1/2) > load (") for d in draws), draws
    # tqdm's meter for the loop: percentage, bar, count, elapsed<remaining, rate
    assert any(
        re.match(r"camera \(1/2\) > calibrating: +\d+%\|.*\| [0-4]/4 \[", d) for d in draws
    ), draws
    assert text.endswith("\r\x1b[K")  # the line is left empty for what the program prints next
    assert stdout == b"tqdm imported\n"


def test_an_unknown_mode_is_one_error_line(tmp_path):
    proc = run_bevcc(
        "compile", "tiny_cnn", "-o", tmp_path / "m.onnx", env_extra={"BEVCC_PROGRESS": "loud"}
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "bevcc: error: BEVCC_PROGRESS: unknown progress mode 'loud'; use one of auto, on, lines, off"
    ]
    assert not (tmp_path / "m.onnx").exists()
    proc = run_bevcc(
        "compile", "tiny_cnn", "-o", tmp_path / "m.onnx", env_extra={"BEVCC_PROGRESS_INTERVAL": "0"}
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        (
            "bevcc: error: BEVCC_PROGRESS_INTERVAL='0': give the seconds between two progress "
            "lines, a number from 0.1 to 3600 (default 5)"
        )
    ]
    assert not (tmp_path / "m.onnx").exists()
    proc = run_bevcc("compile", "tiny_cnn", "-o", tmp_path / "m.onnx", "--progress", "loud")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "--progress: invalid choice: 'loud'" in proc.stderr
