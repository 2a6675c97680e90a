"""bevcc.testing.run_watched ends a command that stopped using CPU (a hang) with everything it
started, and lets one run that is slow but working: the main job's fixture relies on both."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bevcc.testing import run_watched

# The seconds below are test inputs, not limits on the test: a busy process must use CPU within
# half a second, however loaded the machine (it gets a share of a core every few milliseconds).
BUSY = "import time\nwhile time.process_time() < 1.5:\n    pass\nprint('done')\n"


def _state(pid: int) -> str:
    """The process's state letter, or '' when it is gone (Z: ended, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
def test_a_process_group_that_uses_no_cpu_is_ended_with_its_children():
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as info:
        # a shell waiting on a child that sleeps: neither uses CPU
        run_watched(
            ["sh", "-c", "sleep 600 & echo $!; wait"], stall_seconds=1.0, limit_seconds=None
        )
    assert time.monotonic() - start < 60
    assert info.value.stderr.endswith("[run_watched: no CPU used for 1 s]")
    child = int(info.value.output.strip())
    deadline = time.monotonic() + 10
    while _state(child) not in ("", "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(child) in ("", "Z")  # the child went with its parent


def test_a_slow_process_that_keeps_working_is_not_ended():
    """1.5 s of CPU is three stall windows: a wall-clock limit of 0.5 s would have failed it."""
    start = time.monotonic()
    done = run_watched([sys.executable, "-c", BUSY], stall_seconds=0.5, limit_seconds=None)
    assert (done.returncode, done.stdout, done.stderr) == (0, "done\n", "")
    assert time.monotonic() - start > 1.5


def test_the_limit_ends_a_process_that_never_stops_working():
    loop = "while True:\n    pass\n"
    with pytest.raises(subprocess.TimeoutExpired) as info:
        run_watched([sys.executable, "-c", loop], stall_seconds=30.0, limit_seconds=1.0)
    assert info.value.stderr.endswith("[run_watched: limit reached]")
