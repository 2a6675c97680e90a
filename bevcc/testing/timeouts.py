"""Time limits for tests that wait on a process. A limit is there to end a hang (a child process
or a distributed peer that never answers), not to fail a run that is merely slow, so it grows
with the machine: the same suite on a busy or slower machine gets proportionally longer limits.

`scaled_timeout(seconds)`: `seconds` is a generous limit on the reference machine (2 idle
x86_64 cores, where the README's main job takes about 3 minutes), multiplied by the machine's
scale. The scale is BEVCC_TEST_TIMEOUT_SCALE when it is set (a number; `0` lifts every limit),
else measured once per process: the load per core (the highest of the 1, 5 and 15 minute
averages: processes that share a core each run that much slower) times how much more CPU time
than on the reference machine a fixed piece of Python takes here (CPU time, so this measures the
core's speed, not how busy it is), each at least 1.
"""

from __future__ import annotations

import functools
import os
import time

SCALE_ENV = "BEVCC_TEST_TIMEOUT_SCALE"
# The fastest of three runs of _python_work on the reference machine (Python 3.11, AMD EPYC).
_REFERENCE_WORK_SECONDS = 0.07


def scaled_timeout(seconds: float) -> float | None:
    """The limit for a wait that takes at most `seconds` on the reference machine, on this
    machine; None (no limit) when BEVCC_TEST_TIMEOUT_SCALE is 0."""
    scale = machine_scale()
    return None if scale == 0 else seconds * scale


@functools.cache
def machine_scale() -> float:
    """BEVCC_TEST_TIMEOUT_SCALE, or the measured load and speed factor (see the module doc)."""
    given = os.environ.get(SCALE_ENV, "").strip()
    if given:
        try:
            scale = float(given)
        except ValueError:
            scale = -1.0
        if not scale >= 0 or scale == float("inf"):
            raise ValueError(
                f"{SCALE_ENV}={given!r}: expected a number >= 0 (the factor for every test time "
                "limit; 0 for none)"
            )
        return scale
    return _load_per_core() * _slowdown()


def _load_per_core() -> float:
    try:
        load = max(os.getloadavg())
    except OSError:  # no load average on this platform
        return 1.0
    # the cores this process may run on (a container's cpuset), not every core of the host
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1.0, load / (cores or 1))


def _python_work() -> float:
    """CPU seconds of a fixed loop: unlike wall time, other processes on the core do not count."""
    start = time.process_time()
    total = 0
    for i in range(1_000_000):
        total += i * i
    return time.process_time() - start


def _slowdown() -> float:
    return max(1.0, min(_python_work() for _ in range(3)) / _REFERENCE_WORK_SECONDS)
