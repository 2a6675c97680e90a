"""Fixtures shared by the core tests and the plugins' tests: the README's main job, compiled once
per session (it takes about 3 minutes; tests/test_readme.py checks what it writes and
plugins/bevcc-bevfusion/tests/test_deployed.py evaluates it). Tests must not modify its output."""

import os
import re
import shlex
import sys
import time
from pathlib import Path

import pytest

from bevcc.testing import run_watched, scaled_timeout

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


# Progress lines (bevcc/progress.py) would appear in the stderr of any command that runs longer
# than their interval, and CI services set CI=true, which turns them on: tests that want them
# ask (BEVCC_PROGRESS=lines in the command's environment), the others get none.
os.environ["BEVCC_PROGRESS"] = "off"


# The files whose tests use the main job's output: their tests run on one worker, so the compile
# behind them runs once. (pytest 9.2 no longer lets xdist's --dist loadgroup rename test ids, so
# its xdist_group marks are silently ignored; the grouping is done by the scheduler below.)
MAIN_JOB_FILES = ("tests/test_readme.py", "plugins/bevcc-bevfusion/tests/test_deployed.py")
_MAIN_JOB = "readme_main_job"
# Three hours on the reference machine (60 times the main job there): only a loop reaches it.
MAIN_JOB_BACKSTOP_SECONDS = 3 * 3600


def pytest_collection_modifyitems(items):
    """A test that uses the main job from a file not in MAIN_JOB_FILES would compile it again on
    another worker: refuse it at collection, saying where to add the file."""
    for item in items:
        path = item.nodeid.split("::")[0]
        if _MAIN_JOB in getattr(item, "fixturenames", ()) and path not in MAIN_JOB_FILES:
            raise pytest.UsageError(
                f"{item.nodeid} uses {_MAIN_JOB}: add {path} to MAIN_JOB_FILES in conftest.py"
            )


# pytest-xdist's hook: optional, so the suite also runs without xdist (the GPU machine lacks it)
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Work units are test files, except that MAIN_JOB_FILES form one unit, sent out first: the
    compile behind it is the longest single piece of work in the suite."""
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::")[0]
            return _MAIN_JOB if path in MAIN_JOB_FILES else path

        def _assign_work_unit(self, node) -> None:
            if _MAIN_JOB in self.workqueue:
                self.workqueue.move_to_end(_MAIN_JOB, last=False)
            super()._assign_work_unit(node)

    return FileScheduling(config, log)


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
    # About 3 minutes on 2 idle cores, over 30 on the same cores at load 6-8: a wall-clock limit
    # either fails a busy machine or waits for ever on a hang. It is ended when its processes (it
    # forks shape-inference children) use no CPU for 5 minutes; the limit only stops a loop.
    # Progress lines on, as CI shows them: tests/test_readme.py checks they never stop for long.
    env = dict(os.environ, BEVCC_PROGRESS="lines")
    start = time.monotonic()
    proc = run_watched(
        [exe, *map(str, args)],
        cwd=ROOT,
        env=env,
        stall_seconds=scaled_timeout(300),
        limit_seconds=scaled_timeout(MAIN_JOB_BACKSTOP_SECONDS),
    )
    proc.wall_seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    return out, proc
