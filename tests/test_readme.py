"""The README's main job runs as written (minus the setup step) and emits a lint-clean INT8 file."""

import re
import shlex
from pathlib import Path

import onnx

from bevcc.lint.checks import lint_model
from tests.conftest import run_bevcc

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_main_job_compiles_tiny_cnn_to_int8(tmp_path):
    command = re.search(r"\./scripts/setup && \.venv/bin/bevcc (compile .+)", README.read_text())
    args = shlex.split(command.group(1))
    out = tmp_path / "main.onnx"
    args[args.index("-o") + 1] = str(out)
    proc = run_bevcc(*args)
    assert proc.returncode == 0, proc.stderr
    report = lint_model(onnx.load(out))
    assert (report.qdq_pairs, report.reformats, report.problems) == (17, 0, [])
    assert report.int8_mac_share == 1.0
