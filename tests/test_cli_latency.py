"""The commands that must answer at once (`--help`, `passes`, `plugins`, pipeline errors) run in a
process where importing torch, onnx and the other heavy dependencies raises: were any of them
imported again, these fail (benchmarks/cli_latency.py measures the time itself). With the built-ins
only, and with this repo's plugins loaded, whose hooks must declare and defer as the built-ins do."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import repo_plugins

DOC = Path(__file__).resolve().parents[1] / "docs" / "passes.md"
HEAVY = ("torch", "onnx", "onnx_graphsurgeon", "onnxruntime", "spconv", "modelopt", "tqdm")
# What the repo's plugins build on; listing them must not import these either (nor numpy).
PLUGIN_HEAVY = ("numpy", "mmcv", "mmdet", "mmdet3d", "mmengine", "nuscenes")
# Runs bevcc's CLI (what the console script calls) behind an import hook that refuses HEAVY and
# the modules BEVCC_TEST_FORBID_ALSO names, then reports which pass modules got imported.
_SCRIPT = f"""
import importlib.util, os, re, sys

FORBIDDEN = set({HEAVY!r}) | set(filter(None, os.environ.get("BEVCC_TEST_FORBID_ALSO", "").split(",")))


class Forbid:  # finds the heavy modules (so find_spec still sees them installed); never loads one
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in FORBIDDEN:
            return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        raise ImportError(f"forbidden import of {{spec.name}}")

    def exec_module(self, module):  # never reached: create_module raises
        pass

sys.meta_path.insert(0, Forbid())
from bevcc.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help
    code = exc.code
passes = sorted(m for m in sys.modules if re.fullmatch(r"bevcc[.]passes[.]\\w+[.](fx|onnx)", m))
print("pass modules imported:", passes, file=sys.stderr)
sys.exit(code)
"""


def _bevcc_without_torch(*args, plugins=False, forbid_also=()):
    """(exit code, stdout, stderr lines) of `bevcc ARGS` with HEAVY (and `forbid_also`) refused;
    with the built-ins only unless `plugins`: then the installed ones load as they do for users."""
    env = {k: v for k, v in os.environ.items() if k != "BEVCC_DISABLE_PLUGIN_AUTOLOAD"}
    env["BEVCC_TEST_FORBID_ALSO"] = ",".join(forbid_also)
    if not plugins:
        env["BEVCC_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # no time limit: the process imports light modules and prints, waiting on nothing, so it
    # cannot hang (and the heavy imports that would make it slow are refused)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    *errors, imported = proc.stderr.splitlines()
    assert imported == "pass modules imported: []", proc.stderr
    return proc.returncode, proc.stdout, errors


@pytest.mark.parametrize("module, forbid_also", [("torch", ""), ("numpy", "numpy,mmcv")])
def test_the_import_hook_refuses_heavy_modules(module, forbid_also):
    """Else the tests below could not fail."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _SCRIPT.replace("from bevcc.cli", f"import {module}\nfrom bevcc.cli"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, BEVCC_TEST_FORBID_ALSO=forbid_also),
        check=False,
    )
    assert proc.returncode == 1 and f"ImportError: forbidden import of {module}" in proc.stderr


@pytest.mark.parametrize("args", [["--help"], ["compile", "--help"], ["sensitivity", "--help"]])
def test_help_needs_no_heavy_import(args):
    code, out, errors = _bevcc_without_torch(*args)
    assert (code, errors) == (0, []) and out.startswith("usage: bevcc")


def test_passes_lists_every_builtin_without_importing_one():
    code, out, errors = _bevcc_without_torch("passes", "--json")
    assert (code, errors) == (0, [])
    listed = json.loads(out)
    assert len(listed["passes"]) == 17 and len(listed["pipelines"]) == 4
    code, out, errors = _bevcc_without_torch("passes", "--markdown")
    assert (code, out, errors) == (0, DOC.read_text(), [])  # test_docs ties the file to the classes


def test_plugins_lists_what_the_builtins_defer_without_loading_it():
    code, out, errors = _bevcc_without_torch("plugins", "--json")
    assert (code, errors) == (0, [])
    (builtin,) = json.loads(out)["plugins"]
    contributions = builtin["contributions"]
    assert (len(contributions["leaf_modules"]), contributions["models"]) == (
        22,
        ["tiny_cnn", "tiny_sparse"],
    )


@pytest.mark.parametrize(
    "pipeline, message",
    [
        (
            "fx(dce),export,onnx(chek)",
            "unknown onnx pass 'chek': did you mean check? (see `bevcc passes`)",
        ),
        (
            "fx(bn_fold{sparse_bias=maybe})",
            "pass 'bn_fold' option 'sparse_bias=maybe': expected one of auto, inside, outside",
        ),
        (
            "fx(dce),onnx(check)",
            (
                "'onnx(check)' runs on onnx, but the pipeline holds fx there; convert first (e.g. "
                "export) or regroup"
            ),
        ),
    ],
)
def test_a_bad_pipeline_is_reported_before_anything_heavy_loads(tmp_path, pipeline, message):
    code, out, errors = _bevcc_without_torch(
        "compile", "tiny_cnn", "-o", tmp_path / "m.onnx", "--pipeline", pipeline
    )
    assert (code, out, errors) == (2, "", [f"bevcc: error: {message}"])
    assert list(tmp_path.iterdir()) == []


def test_import_bevcc_imports_nothing_heavy():
    code = f"import sys, bevcc; print(sorted(m for m in sys.modules if m in {('numpy', *HEAVY)}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout == "[]\n"


@pytest.mark.parametrize("command", ["plugins", "passes"])
def test_the_repos_plugins_load_and_list_without_anything_heavy(command):
    code, out, errors = _bevcc_without_torch(
        command, "--json", plugins=True, forbid_also=PLUGIN_HEAVY
    )
    assert (code, errors) == (
        0,
        [],
    )  # a plugin whose hook imported torch would fail, with a warning
    listed = json.loads(out)
    if command == "plugins":
        status = {p["name"]: p["status"] for p in listed["plugins"]}
        assert {name: status.get(name) for name in repo_plugins()} == dict.fromkeys(
            repo_plugins(), "ok"
        )
    else:
        assert {"example", "swin"} <= {row["plugin"] for row in listed["passes"]}


def test_with_the_repos_plugins_help_and_a_bad_option_import_nothing_heavy(tmp_path):
    code, out, errors = _bevcc_without_torch("--help", plugins=True, forbid_also=PLUGIN_HEAVY)
    assert (code, errors) == (0, []) and out.startswith("usage: bevcc")
    # compile's help lists the plugins' models, read from their declarations
    code, out, errors = _bevcc_without_torch(
        "compile", "--help", plugins=True, forbid_also=PLUGIN_HEAVY
    )
    assert (code, errors) == (0, []) and "swin_tiny_camera" in out
    pipeline = "fx(qdq_insert,attention_qdq{softmax_amax=2})"  # checked by the swin declaration
    code, out, errors = _bevcc_without_torch(
        "compile", "tiny_cnn", "-o", tmp_path / "m.onnx", "--pipeline", pipeline, plugins=True
    )
    message = (
        "bevcc: error: pass 'attention_qdq' options: softmax_amax=2.0 is outside (0, 1]: softmax "
        "outputs lie in [0, 1]; write attention_qdq{softmax_amax=1.0} or none"
    )
    assert (code, out, errors) == (2, "", [message])
