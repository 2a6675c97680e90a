"""scripts/install-cpu-torch, which scripts/setup runs first: the CPU build of torch from PyTorch's
CPU index where it answers, else from a local wheel pip finds, never PyPI's CUDA build. A stand-in
pip records the arguments the script hands it; the index is a local HTTP server, or a port where
nothing listens."""

from __future__ import annotations

import functools
import http.server
import os
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install-cpu-torch"
REQUIREMENT = "torch==2.13.0+cpu"
QUIET = ["install", "--quiet", "--disable-pip-version-check"]

# Records its arguments, one a line; prints STANDIN_STDERR to stderr and exits STANDIN_EXIT.
STANDIN_PIP = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$STANDIN_RECORD"
printf '%s' "${STANDIN_STDERR:-}" >&2
exit "${STANDIN_EXIT:-0}"
"""
NO_WHEEL = (
    "ERROR: Could not find a version that satisfies the requirement torch==2.13.0+cpu "
    "(from versions: 2.12.1, 2.13.0)\nERROR: No matching distribution found for torch==2.13.0+cpu\n"
)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test's output clean
        pass


@pytest.fixture
def index(tmp_path):
    """A reachable index: a local HTTP server with a page for torch, as the CPU index has."""
    root = tmp_path / "index"
    (root / "torch").mkdir(parents=True)
    (root / "torch" / "index.html").write_text("<html><body></body></html>\n")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def unreachable():
    """An index URL on a local port where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/whl/cpu"


def _install(tmp_path, index_url, **standin):
    pip = tmp_path / "bin" / "pip"
    pip.parent.mkdir(exist_ok=True)
    pip.write_text(STANDIN_PIP)
    pip.chmod(0o755)
    record = tmp_path / "pip-args.txt"
    env = dict(os.environ, BEVCC_TORCH_INDEX_URL=index_url, STANDIN_RECORD=str(record))
    env.update({f"STANDIN_{k.upper()}": str(v) for k, v in standin.items()})
    # cannot hang: the stand-in pip returns at once and the probe gives up after 10 s
    proc = subprocess.run(
        [str(SCRIPT), str(pip)], capture_output=True, text=True, env=env, check=False
    )
    return proc, record.read_text().splitlines() if record.exists() else None


def test_a_reachable_index_supplies_the_cpu_wheel(tmp_path, index):
    proc, args = _install(tmp_path, index)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert args == [*QUIET, "--index-url", index, REQUIREMENT]


def test_without_the_index_pip_looks_for_the_cpu_wheel_where_it_is_configured(
    tmp_path, unreachable
):
    proc, args = _install(tmp_path, unreachable)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert args == [*QUIET, REQUIREMENT]  # its find-links (a local wheel), its usual index


@pytest.mark.parametrize("reachable", [True, False])
def test_no_cpu_wheel_anywhere_is_one_line_saying_what_to_do(
    tmp_path, index, unreachable, reachable
):
    url = index if reachable else unreachable
    proc, _ = _install(tmp_path, url, exit=1, stderr=NO_WHEEL)
    where = (
        f"neither {url} nor pip's find-links hold a {REQUIREMENT} wheel for this Python"
        if reachable
        else f"{url} is unreachable and pip's find-links hold no {REQUIREMENT} wheel"
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"scripts/install-cpu-torch: {where}; make the index reachable (or set "
        "BEVCC_TORCH_INDEX_URL to a mirror of it), or download the wheel for this Python from it "
        "into a folder and set PIP_FIND_LINKS to that folder\n"
    )


def test_other_pip_failures_are_shown_as_pip_wrote_them(tmp_path, unreachable):
    proc, _ = _install(tmp_path, unreachable, exit=1, stderr="ERROR: No space left on device\n")
    assert (proc.returncode, proc.stderr) == (1, "ERROR: No space left on device\n")


def test_only_the_cpu_build_satisfies_the_requirement():
    """Why `+cpu`: `==2.13.0` also accepts PyPI's 2.13.0 (the CUDA build); `==2.13.0+cpu` does not."""
    pinned = SpecifierSet(REQUIREMENT.removeprefix("torch"))
    assert Version("2.13.0+cpu") in pinned and Version("2.13.0") not in pinned
    assert Version("2.13.0") in SpecifierSet("==2.13.0")


def _script_default(variable: str) -> str:
    text = SCRIPT.read_text()
    match = re.search(rf'^{variable}="(?:\$\{{\w+:-)?([^"}}]+)\}}?"$', text, re.MULTILINE)
    assert match, f"{SCRIPT.name} lost its {variable}"
    return match.group(1)


def test_setup_and_the_readme_install_torch_the_scripts_way():
    assert _script_default("requirement") == REQUIREMENT
    default_index = _script_default("index")
    assert default_index == "https://download.pytorch.org/whl/cpu"
    setup = (ROOT / "scripts" / "setup").read_text().splitlines()
    installs = [line for line in setup if "torch" in line and not line.startswith("#")]
    assert installs == ["scripts/install-cpu-torch .venv/bin/pip"]
    assert setup.index(installs[0]) < next(i for i, line in enumerate(setup) if "'.[dev]'" in line)
    readme = (ROOT / "README.md").read_text()
    without_e = readme[readme.index("### Installing without `-e`") :]
    block = re.search(r"```\n(.*?)```", without_e, re.DOTALL).group(1)
    assert block.splitlines()[0] == f"pip install {REQUIREMENT} --index-url {default_index}"
