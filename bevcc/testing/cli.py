"""Run bevcc's CLI as a user does: its own process, its exit code, its stdout and stderr.

The process is the installed console script, or, where the test process can give it the same
start, a fork of the test process: a fresh interpreter spends about 3 s importing torch and onnx
before the command does anything, which a test suite running 200 commands pays 200 times. The
fork runs `bevcc.cli.main` on a fresh plugin registry, with the interpreter's start-up warning
filters, no logging handlers of the test runner, the command's own umask, directory and extra
environment variables, and its output written to files read back here. The extra variables a
fork can take are bevcc's own (`BEVCC_*`): bevcc and its plugins read them when a command runs,
not at import. Any other (`PYTHONPATH`, a thread count) may be read at start-up or import and
gets a fresh interpreter, as does every command where torch runs more than one thread (OpenMP's
thread pool does not survive a fork) or `BEVCC_TEST_FORK=0`."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping

from bevcc.plugins import DISABLE_AUTOLOAD_ENV
from bevcc.testing.timeouts import scaled_timeout

# For commands that must see bevcc alone: an installed plugin's passes would change their output.
NO_PLUGINS = {DISABLE_AUTOLOAD_ENV: "1"}
FORK_ENV = "BEVCC_TEST_FORK"  # "0": every command in a fresh interpreter
_STARTUP_WARNING_FILTERS = list(warnings.filters)  # before a test runner adds its own


def run_bevcc(
    *args,
    env_extra: Mapping[str, str] | None = None,
    cwd=None,
    timeout: float | None = 300,
    umask: int = -1,
) -> subprocess.CompletedProcess:
    """Run `bevcc ARGS...` and return the finished process, its stdout and stderr as text; a
    non-zero exit is not an error here, so tests can assert on it. `env_extra` is added to this
    process's environment. `timeout` is the limit in seconds on the reference machine, grown to
    this one by `scaled_timeout` (None: none): a command waits on child processes, so a hang must
    end, but a slow machine must not fail. `umask`: the command's file mode mask (default: this
    process's)."""
    argv = [str(a) for a in args]
    limit = None if timeout is None else scaled_timeout(timeout)
    if _can_fork() and _read_when_a_command_runs(env_extra or {}):
        return _forked(argv, cwd, limit, umask, dict(env_extra or {}))
    env = dict(os.environ, **(env_extra or {}))
    exe = os.path.join(os.path.dirname(sys.executable), "bevcc")
    return subprocess.run(
        [exe, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=limit,
        check=False,
        umask=umask,
    )


def _read_when_a_command_runs(env_extra: Mapping[str, str]) -> bool:
    return all(key.startswith("BEVCC_") and key != FORK_ENV for key in env_extra)


def _can_fork() -> bool:
    if os.name != "posix" or os.environ.get(FORK_ENV, "1") == "0":
        return False
    torch = sys.modules.get("torch")
    return torch is None or torch.get_num_threads() == 1


def _forked(
    argv: list[str], cwd, limit: float | None, umask: int, env: dict[str, str]
) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="bevcc-run-") as tmp:
        out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        sys.stdout.flush()
        sys.stderr.flush()
        # Everything the test process holds, its uncollected garbage included, goes to the
        # collector's permanent generation for the fork: the command's collections never free
        # it. Freeing it there would run native destructors on state the fork did not copy
        # (an onnxruntime session's thread pool waits on threads the child does not have:
        # the child hung or crashed).
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            gc.unfreeze()
            raise
        if pid == 0:  # the command's process
            code = 1
            try:
                code = _child(argv, cwd, umask, env, out_path, err_path)
            finally:
                os._exit(code)
        gc.unfreeze()
        code = _wait(pid, limit, argv)
        with open(out_path, encoding="utf-8", errors="replace") as out:
            stdout = out.read()
        with open(err_path, encoding="utf-8", errors="replace") as err:
            stderr = err.read()
    return subprocess.CompletedProcess(["bevcc", *argv], code, stdout, stderr)


def _child(argv: list[str], cwd, umask: int, env: dict, out_path: str, err_path: str) -> int:
    import logging
    import traceback

    for fd, path in ((1, out_path), (2, err_path)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stdin, for its life
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    signal.signal(signal.SIGINT, signal.default_int_handler)
    warnings.filters[:] = _STARTUP_WARNING_FILTERS
    logging.root.handlers.clear()
    logging.root.setLevel(logging.WARNING)
    os.environ.update(env)
    if umask >= 0:
        os.umask(umask)
    if cwd is not None:
        os.chdir(cwd)
    sys.argv = ["bevcc", *argv]
    from bevcc import plugins
    from bevcc.cli import main

    plugins.reset()  # the command loads plugins as a fresh process does, not the test's
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, int | None):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - as the interpreter does: the traceback, exit 1
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    return code


def _wait(pid: int, limit: float | None, argv: list[str]) -> int:
    """The forked command's exit code; killed, and TimeoutExpired raised, past `limit`."""
    deadline = None if limit is None else time.monotonic() + limit
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if deadline is not None and time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise subprocess.TimeoutExpired(["bevcc", *argv], limit)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
