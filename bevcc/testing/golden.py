"""Golden-graph tests: compare an IR dump with a reviewed text file; regenerate on request.

As a pytest plugin (entry point `pytest11`, loaded wherever bevcc is installed) it adds:
  * the `golden` fixture: `golden("name", ir_or_text)` compares with `<goldens>/name.txt`;
  * `--bevcc-update-goldens`: rewrite the files instead of comparing;
  * the ini option `bevcc_golden_dir` (relative to rootdir); default: `golden/` beside the test file.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from bevcc.atomic import write_text_atomic

UPDATE_FLAG = "--bevcc-update-goldens"


class GoldenMismatch(AssertionError):
    """The text differs from its golden file; the message holds a unified diff."""


def compare_golden(text: str, path: str | Path, update: bool = False) -> None:
    """Raise GoldenMismatch unless `text` equals the file at `path` (or rewrite it if `update`)."""
    path = Path(path)
    if update:
        if not path.exists() or path.read_text() != text:
            write_text_atomic(path, text)
        return
    if not path.exists():
        raise GoldenMismatch(
            f"golden file {path} does not exist; run pytest {UPDATE_FLAG} to "
            "create it, then review it"
        )
    expected = path.read_text()
    if expected != text:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{path} (golden)",
                tofile="actual",
            )
        )
        raise GoldenMismatch(
            f"output differs from golden {path}; if the change is intended, run "
            f"pytest {UPDATE_FLAG} and review the diff:\n{diff}"
        )


class Golden:
    """The `golden` fixture's value: call it with a name and an IR (or text)."""

    def __init__(self, directory: Path, update: bool):
        self.directory = directory
        self.update = update

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.txt"

    def __call__(self, name: str, ir_or_text) -> None:
        text = ir_or_text if isinstance(ir_or_text, str) else ir_or_text.dump()
        try:
            compare_golden(text, self.path(name), self.update)
        except GoldenMismatch as exc:
            failure = str(exc)
        else:
            return
        pytest.fail(failure, pytrace=False)  # outside `except`: the diff is printed once


def pytest_addoption(parser):
    group = parser.getgroup("bevcc")
    group.addoption(
        UPDATE_FLAG,
        action="store_true",
        default=False,
        help="rewrite bevcc golden files instead of comparing against them",
    )
    parser.addini(
        "bevcc_golden_dir",
        "directory of golden files, relative to rootdir (default: golden/ beside each test file)",
        default="",
    )


@pytest.fixture
def golden(request) -> Golden:
    configured = request.config.getini("bevcc_golden_dir")
    if configured:
        directory = Path(request.config.rootpath) / configured
    else:
        directory = Path(request.path).parent / "golden"
    return Golden(directory, request.config.getoption(UPDATE_FLAG))
