"""Run bevcc's CLI as a user does: the installed console script, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping


def run_bevcc(
    *args,
    env_extra: Mapping[str, str] | None = None,
    cwd=None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run `bevcc ARGS...` (the console script beside this Python) and return the finished
    process, its stdout and stderr as text; a non-zero exit is not an error here, so tests can
    assert on it. `env_extra` is added to this process's environment."""
    env = dict(os.environ, **(env_extra or {}))
    exe = os.path.join(os.path.dirname(sys.executable), "bevcc")
    return subprocess.run(
        [exe, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
