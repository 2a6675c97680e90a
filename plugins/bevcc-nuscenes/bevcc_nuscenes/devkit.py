"""Where nuscenes-devkit runs: in this interpreter if it can import it, else in a worker process.

The devkit pins numpy<2, so it usually lives in its own environment (setup-devkit-env). The
worker is started once per interpreter and kept: NuScenes tables are loaded once, and each
evaluation is one JSON line each way.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bevcc.errors import InputError, UsageError

PYTHON_ENV = "BEVCC_NUSCENES_PYTHON"
WORKER = Path(__file__).with_name("devkit_worker.py")
SETUP_HINT = "run plugins/bevcc-nuscenes/setup-devkit-env"


def default_python() -> Path:
    """`.venv-nuscenes` next to the running environment (setup-devkit-env's default)."""
    return Path(sys.prefix).parent / ".venv-nuscenes" / "bin" / "python"


def runner(python: str | os.PathLike | None = None):
    """The evaluator for `python` (explicit, $BEVCC_NUSCENES_PYTHON, in-process, or default)."""
    chosen = python or os.environ.get(PYTHON_ENV)
    if not chosen:
        if importlib.util.find_spec("nuscenes") is not None:
            from bevcc_nuscenes import devkit_worker

            return devkit_worker.evaluate
        chosen = default_python()
        if not chosen.is_file():
            raise UsageError(
                f"bevcc-nuscenes: nuscenes-devkit is not importable here and there "
                f"is no devkit interpreter at {chosen}; {SETUP_HINT}, set "
                f"{PYTHON_ENV}=/path/to/python, or pip install "
                f"'bevcc-nuscenes[devkit]' if this environment can hold numpy<2"
            )
    path = Path(chosen)
    if not path.is_file():
        raise UsageError(
            f"bevcc-nuscenes: devkit interpreter {path} does not exist; "
            f"{SETUP_HINT} or fix {PYTHON_ENV}"
        )
    worker = _WORKERS.get(str(path))
    if worker is None or not worker.alive():
        worker = _WORKERS[str(path)] = Worker(path)
    return worker.evaluate


class Worker:
    """One devkit interpreter serving JSON-line requests (devkit_worker.serve)."""

    def __init__(self, python: Path):
        self.python = python
        # the worker's stderr, read on failure; open as long as the worker lives
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(python), str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "PYTHONNOUSERSITE": "1"},
        )
        ready = self._answer("starting")
        if "ready" not in ready:
            raise InputError(f"bevcc-nuscenes: devkit interpreter {python} answered {ready!r}")
        self.devkit_version = ready["ready"]

    def alive(self) -> bool:
        return self.process.poll() is None

    def evaluate(self, request: dict) -> dict:
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the worker died; _answer reports why
        answer = self._answer("evaluating")
        if "error" in answer:
            raise InputError(f"nuScenes evaluation failed: {answer['error']}")
        return answer["metrics"]

    def close(self) -> None:
        if self.alive():
            self.process.stdin.close()  # the worker ends when its input ends
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def _answer(self, doing: str) -> dict:
        line = self.process.stdout.readline()
        if line:
            return json.loads(line)
        self.process.wait()
        self.log.seek(0)
        lines = [x for x in self.log.read().splitlines() if x.strip()]
        reason = lines[-1] if lines else f"exit code {self.process.returncode}"
        hint = f"; {SETUP_HINT}" if "No module named 'nuscenes" in reason else ""
        raise InputError(
            f"bevcc-nuscenes: devkit interpreter {self.python} failed while {doing}: {reason}{hint}"
        )


_WORKERS: dict[str, Worker] = {}


@atexit.register
def _close_workers() -> None:
    for worker in _WORKERS.values():
        worker.close()
    _WORKERS.clear()
