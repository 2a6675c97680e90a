"""docs/writing_passes.md says what a pass author meets, and its examples run as written:

- a `python` block runs in a fresh interpreter; comment lines right after its code and before a
  blank line (or the block's end) are what it must print;
- a block of `$ bevcc ...` / `$ cat FILE` lines runs each command; the lines up to the next `$`
  are its stdout then its stderr (`...` stands for any lines; times in the --timing table are
  not compared);
- a block whose first line is a comment naming a file of the repo is an excerpt of that file;
- `<!-- the file PATH -->` before a block: the block is that file;
- `<!-- not run: WHY -->` before a block leaves it out, saying why.

Paths under /tmp/ in the doc are a fresh scratch folder, and commands run from a folder the doc
calls /home/me/bevcc.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bevcc.pm.pass_base import DECLARED
from bevcc.testing import run_bevcc, scaled_timeout

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "writing_passes.md"
DOC_CWD = "/home/me/bevcc"


@dataclass
class Block:
    lang: str
    text: str
    line: int  # where the block's first line is in the doc
    marker: str  # the HTML comment right before it, if any

    @property
    def id(self) -> str:
        return f"{self.lang or 'text'}@{self.line}"


def _blocks() -> list[Block]:
    blocks, lines = [], DOC.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = re.fullmatch(r"\s*```(\w*)", lines[i])
        if not opening:
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        before = lines[i - 1].strip() if i else ""
        marker = before[4:-3].strip() if before.startswith("<!--") else ""
        body = "\n".join(line[indent:] for line in lines[i + 1 : end]) + "\n"
        blocks.append(Block(opening.group(1), body, i + 2, marker))
        i = end + 1
    return blocks


BLOCKS = _blocks()


def _repo_file(block: Block) -> Path | None:
    """The repo file a block's first-line comment names (`# path/to/file ...`), if any."""
    first = block.text.splitlines()[0]
    match = re.match(r"#\s*([\w./-]+\.\w+)", first)
    if match and (ROOT / match.group(1)).is_file():
        return ROOT / match.group(1)
    return None


def _kind(block: Block) -> str:
    if block.marker.startswith("not run:"):
        return "not run"
    if block.marker.startswith("the file "):
        return "file"
    if _repo_file(block):
        return "excerpt"
    if block.lang == "python":
        return "python"
    if block.text.startswith("$ "):
        return "commands"
    return "text"


def _of_kind(kind: str) -> list[Block]:
    return [b for b in BLOCKS if _kind(b) == kind]


def test_the_doc_holds_the_examples_this_test_runs():
    counts = {kind: len(_of_kind(kind)) for kind in ("python", "commands", "excerpt", "file")}
    assert counts == {"python": 3, "commands": 4, "excerpt": 4, "file": 1}
    skipped = _of_kind("not run")
    assert all(len(b.marker) > len("not run: ") + 10 for b in skipped)  # each says why
    assert len(skipped) == 3


def test_the_contract_table_names_every_declared_member():
    """A pass that quantizes must say so (`quantizes`), or it stays in the FP16 set."""
    text = DOC.read_text()
    table = text[text.index("| member | meaning |") : text.index("**Options from text.**")]
    rows = [row for row in table.splitlines()[2:] if row.startswith("|")]
    members = {m for row in rows for m in re.findall(r"`(\w+)", row.split("|")[1])}
    assert {*DECLARED, "Options", "call", "requires", "ensures", "report"} <= members


# ---- python blocks ----------------------------------------------------------------------------


def _expected_prints(code: str) -> str:
    """The comment lines that follow a line of code and end at a blank line or the block's end:
    what the code before them prints (whitespace-insensitive, so a long line may wrap)."""
    lines, out, i = code.splitlines(), [], 0
    while i < len(lines):
        after_code = i > 0 and lines[i - 1].strip() and not lines[i - 1].startswith("#")
        if not (lines[i].startswith("#") and after_code):
            i += 1
            continue
        end = i
        while end < len(lines) and lines[end].startswith("#"):
            end += 1
        if end == len(lines) or not lines[end].strip():
            out += [line[1:] for line in lines[i:end]]
        i = end
    return " ".join(" ".join(out).split())


def _scratch(tmp_path: Path) -> tuple[Path, Path]:
    """(the folder standing for /tmp, the folder standing for /home/me/bevcc)."""
    tmp, cwd = tmp_path / "tmp", tmp_path / "bevcc"
    tmp.mkdir()
    cwd.mkdir()
    return tmp, cwd


@pytest.mark.parametrize("block", _of_kind("python"), ids=lambda b: b.id)
def test_python_example_prints_what_the_doc_says(block, tmp_path):
    tmp, cwd = _scratch(tmp_path)
    expected = _expected_prints(block.text)
    assert expected, "a python example shows what it prints"
    # waits on bevcc.compile's forked shape-inference children
    proc = subprocess.run(
        [sys.executable, "-c", block.text.replace("/tmp/", f"{tmp}/")],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=scaled_timeout(300),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert " ".join(proc.stdout.split()) == expected


# ---- shell blocks -----------------------------------------------------------------------------


def _commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, its output lines) for each `$ ` line (a trailing backslash continues it)."""
    out: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        command = lines[i][2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + lines[i].strip()
        i += 1
        shown = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        out.append((command, shown))
    return out


def _without_times(line: str) -> str:
    """Seconds vary run to run: the timing table's (four decimals) and the time line's (one)."""
    return re.sub(r" *\d+\.\d+", " T", line)


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; a `...` line (indented or not) stands for any number of lines."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(_matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return (
        bool(actual)
        and _without_times(expected[0]) == _without_times(actual[0])
        and _matches(expected[1:], actual[1:])
    )


@pytest.mark.parametrize("block", _of_kind("commands"), ids=lambda b: b.id)
def test_commands_print_what_the_doc_shows(block, tmp_path):
    tmp, cwd = _scratch(tmp_path)
    for command, shown in _commands(block.text):
        args = shlex.split(command.replace("/tmp/", f"{tmp}/"))
        if args[0] == "cat":
            code, printed = 0, Path(args[1]).read_text()
        else:
            assert args[0] == "bevcc", f"{block.id}: the test runs bevcc and cat, not {args[0]}"
            proc = run_bevcc(*args[1:], cwd=cwd)
            code, printed = proc.returncode, proc.stdout + proc.stderr
        printed = printed.replace(f"{tmp}/", "/tmp/").replace(str(cwd), DOC_CWD)
        assert _matches(shown, printed.splitlines()), f"$ {command}\n{printed}"
        fails = any(line.startswith("bevcc: error: ") for line in shown)
        assert (code != 0) == fails, f"$ {command}: exit {code}"


def test_the_matcher_can_fail():
    assert _matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert _matches(["  0.1000  x"], ["  12.3456  x"])
    assert not _matches(["a", "...", "d"], ["a", "b", "c"])
    assert not _matches(["a"], ["a", "b"])


# ---- excerpts and files -----------------------------------------------------------------------


def _code_lines(text: str) -> list[str]:
    """Lines as code: without comments, blank lines, `...` and a trailing ` ...` body."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        line = line.removesuffix(" ...").strip()
        if line and line != "..." and not line.startswith("#"):
            out.append(line)
    return out


@pytest.mark.parametrize("block", _of_kind("excerpt"), ids=lambda b: b.id)
def test_excerpts_are_in_the_files_they_name(block):
    source = set(_code_lines(_repo_file(block).read_text()))
    missing = [line for line in _code_lines(block.text) if line not in source]
    assert missing == []


@pytest.mark.parametrize("block", _of_kind("file"), ids=lambda b: b.id)
def test_a_block_given_as_a_file_is_that_file(block):
    path = ROOT / block.marker.removeprefix("the file ")
    assert block.text == path.read_text().rstrip("\n") + "\n"


# ---- a scratch plugin's tests -----------------------------------------------------------------

PLUGIN = """\
import bevcc
from bevcc.pass_info import PassInfo

NOOP = PassInfo(name="noop", ir="onnx", impl="my_plugin:Noop", summary="Change nothing.")


class Noop(bevcc.Pass, declaration=NOOP):
    def call(self, ir):
        return bevcc.PassResult(ir, modified=False)


@bevcc.hookimpl
def bevcc_register_passes(registry):
    registry.add_pass(NOOP)
"""
PLUGIN_TEST = """\
from bevcc.testing import plugin_registry


def test_the_pass_is_registered():
    registry = plugin_registry("my_plugin")
    assert registry.pass_info("noop", "onnx", conversion=False).summary == "Change nothing."
"""


def _scratch_pytest(folder: Path, assignments: dict[str, str]):
    env = dict(os.environ)
    for name, value in assignments.items():
        if name == "PYTHONPATH":  # ahead of the path this test runs with, which finds bevcc
            value = os.pathsep.join(filter(None, [value, env.get("PYTHONPATH")]))
        env[name] = value
    pytest_exe = Path(sys.executable).with_name("pytest")
    # cannot hang: the scratch test only loads plugin declarations, nothing heavy or forked
    return subprocess.run(
        [str(pytest_exe), "-q", "-p", "no:cacheprovider", "tests/"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_scratch_plugins_tests_run_with_the_documented_command(tmp_path):
    text = DOC.read_text()
    command = re.search(r"\n(\S+=\S+ \S+=\S+ pytest tests/)\n", text).group(1)
    *assignments, _, _ = shlex.split(command)
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_my_plugin.py").write_text(PLUGIN_TEST)
    documented = _scratch_pytest(tmp_path, dict(a.split("=", 1) for a in assignments))
    assert documented.returncode == 0, documented.stdout + documented.stderr
    assert "1 passed" in documented.stdout
    plain = _scratch_pytest(tmp_path, {})  # as the doc warns: not installed, not named
    assert plain.returncode == 1
    assert (
        "AssertionError: plugin 'my_plugin' is not installed: pip install -e the folder that "
        "holds it, or put its module on PYTHONPATH and name it in BEVCC_PLUGINS"
    ) in plain.stdout
