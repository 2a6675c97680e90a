"""The README's main job runs as written (minus the setup step) and emits a lint-clean INT8 file."""

import re
import shlex
from pathlib import Path

import onnx

from bevcc.quant.encoding_check import check_encoding
from tests.conftest import run_bevcc

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_main_job_compiles_tiny_cnn_to_int8(tmp_path):
    command = re.search(r"\./scripts/setup && \.venv/bin/bevcc (compile .+)", README.read_text())
    args = shlex.split(command.group(1))
    out = tmp_path / "main.onnx"
    args[args.index("-o") + 1] = str(out)
    proc = run_bevcc(*args)
    assert proc.returncode == 0, proc.stderr
    model = onnx.load(out)
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == 15
    assert check_encoding(model) == []
