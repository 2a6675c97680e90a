"""A wheel built from the tree works installed the ordinary way (`pip install .`, not `-e`).

An editable install imports from the source tree and hides any package the wheel forgets; this
test builds the wheel, checks it holds every module of the tree, installs it into a fresh venv
and runs `bevcc passes`, a small compile and `bevcc lint` from there.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from bevcc.testing import scaled_timeout

ROOT = Path(__file__).resolve().parents[1]
# The venv sees the wheel and the test environment's dependencies, not a source tree on PYTHONPATH.
_WITHOUT_PYTHONPATH = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _source_modules() -> set[str]:
    """Every module of the bevcc package in the tree, as the path it has inside a wheel."""
    return {
        str(p.relative_to(ROOT))
        for p in (ROOT / "bevcc").rglob("*.py")
        if "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # no time limit on pip and venv here: local files only (--no-deps, --no-index, no build
    # isolation), so nothing is downloaded and nothing can hang
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("bevcc-*.whl")
    return path


def test_the_wheel_holds_every_module_of_the_tree(wheel):
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.endswith(".py")}
    missing = sorted(_source_modules() - packaged)
    assert missing == []
    assert not any(name.startswith("passes/") for name in packaged)  # no bare top-level package


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with bevcc from the wheel. Its dependencies (torch, onnx, ...) are the test
    environment's, reached through a .pth line: a plain path entry, so the editable install's
    finder there is never activated and `import bevcc` can only find the wheel's copy."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        env=_WITHOUT_PYTHONPATH,  # a tree on PYTHONPATH would hold bevcc "installed" already
    )
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run(
        [str(python), "-c", query], check=True, capture_output=True, text=True
    ).stdout
    deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    Path(purelib.strip(), "test_dependencies.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    return root


def _run(venv: Path, *args, cwd: Path):
    env = dict(_WITHOUT_PYTHONPATH)
    env["BEVCC_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the test env's editable plugins are not here
    return subprocess.run(
        [str(venv / "bin" / args[0]), *map(str, args[1:])],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled_timeout(600),  # bevcc compile waits on forked children: end a hang
        check=False,
    )


def test_installed_wheel_imports_from_itself_and_lists_the_passes(venv, tmp_path):
    where = _run(
        venv, "python", "-c", "import bevcc, bevcc.passes; print(bevcc.__file__)", cwd=tmp_path
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(venv))
    listed = _run(venv, "bevcc", "passes", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {row["name"] for row in json.loads(listed.stdout)["passes"]}
    assert {
        "bn_fold",
        "qdq_insert",
        "quantizer_unify",
        "sensitivity_disable",
        "sparse_conv_quant",
    } <= names


def test_installed_wheel_compiles_and_lints_a_model(venv, tmp_path):
    out = tmp_path / "tiny.int8.onnx"
    compiled = _run(
        venv,
        "bevcc",
        "compile",
        "tiny_cnn",
        "--calib",
        "bevcc.reference.tiny_cnn:calibration_batches",
        "--pipeline",
        "fx(bn_fold,qdq_insert,quantizer_unify),export,onnx(check)",
        "-o",
        out,
        cwd=tmp_path,
    )
    assert compiled.returncode == 0, compiled.stderr
    linted = _run(venv, "bevcc", "lint", out, "--json", cwd=tmp_path)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    report = json.loads(linted.stdout)
    assert (report["errors"], report["predicted_reformats"]) == (0, 0)
    # the same file an editable install makes (test_readme's single-model example): 17 Q/DQ
    # pairs, every MAC in INT8
    assert (report["qdq_pairs"], report["int8_mac_share"]) == (17, 1.0)
