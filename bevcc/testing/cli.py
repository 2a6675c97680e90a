"""Run bevcc's CLI as a user does: the installed console script, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from bevcc.testing.timeouts import scaled_timeout


def run_bevcc(
    *args,
    env_extra: Mapping[str, str] | None = None,
    cwd=None,
    timeout: float | None = 300,
    umask: int = -1,
) -> subprocess.CompletedProcess:
    """Run `bevcc ARGS...` (the console script beside this Python) and return the finished
    process, its stdout and stderr as text; a non-zero exit is not an error here, so tests can
    assert on it. `env_extra` is added to this process's environment. `timeout` is the limit
    in seconds on the reference machine, grown to this one by `scaled_timeout` (None: none):
    a command waits on child processes, so a hang must end, but a slow machine must not fail.
    `umask`: the command's file mode mask (default: this process's)."""
    env = dict(os.environ, **(env_extra or {}))
    exe = os.path.join(os.path.dirname(sys.executable), "bevcc")
    return subprocess.run(
        [exe, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=None if timeout is None else scaled_timeout(timeout),
        check=False,
        umask=umask,
    )
