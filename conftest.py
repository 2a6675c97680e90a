"""Fixtures shared by the core tests and the plugins' tests: the README's main job, compiled once
per session (it takes about 3 minutes; tests/test_readme.py checks what it writes and
plugins/bevcc-bevfusion/tests/test_deployed.py evaluates it). Tests must not modify its output."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
README = ROOT / "README.md"

# pytest-xdist runs the suite in one worker per core (pyproject's addopts). Each worker, and every
# bevcc process it starts, gets an equal share of the cores: torch would otherwise start a thread
# per core in every worker and they would fight over the same cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
    if "torch" in sys.modules:  # a pytest plugin imported it before this file: tell it directly
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(items):
    """Group tests for --dist loadgroup so each expensive fixture is built once: a file's tests run
    on one worker (its module-scoped fixtures), and every test of the main job's output, whatever
    its file, on one worker (the 2-3 minute compile behind it)."""
    for item in items:
        if "readme_main_job" in getattr(item, "fixturenames", ()):
            group = "readme_main_job"
        else:
            group = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


def readme_command(pattern: str) -> list[str]:
    match = re.search(pattern, README.read_text())
    assert match, f"README lost the command matching {pattern}"
    return shlex.split(match.group(1))


@pytest.fixture(scope="session")
def readme_commands():
    """readme_command, for tests that run another README command as written."""
    return readme_command


@pytest.fixture(scope="session")
def readme_main_job(tmp_path_factory):
    """(output directory, finished process) of the README's main command, run as written."""
    args = readme_command(r"\./scripts/setup && \.venv/bin/bevcc (compile .+)")
    out = tmp_path_factory.mktemp("main") / "bevfusion"
    args[args.index("-o") + 1] = str(out)
    exe = os.path.join(os.path.dirname(sys.executable), "bevcc")
    proc = subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc
