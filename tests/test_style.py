"""The tree stays as ruff's lint rules (pyproject's [tool.ruff.lint]) and its formatter want it: a
change that breaks either fails here, not only in review."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    beside_python = Path(sys.executable).with_name("ruff")
    found = str(beside_python) if beside_python.exists() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: it is in bevcc's dev extras (pip install -e '.[dev]')")
    return found


@pytest.mark.parametrize(
    "args", [["check", "-q", "."], ["format", "--check", "-q", "."]], ids=["lint", "format"]
)
def test_ruff_is_clean(args):
    done = subprocess.run([_ruff(), *args], check=False, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
