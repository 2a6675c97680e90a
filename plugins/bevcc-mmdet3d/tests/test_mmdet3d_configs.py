"""The plugin's shipped configs, as a user runs them: `bevcc compile --config`, then `bevcc lint`."""

import collections
import json
from pathlib import Path

import onnx
import pytest

from bevcc.testing import run_bevcc

CONFIGS = Path(__file__).resolve().parents[1] / "bevcc_mmdet3d"


def _bevcc(*args):
    run = run_bevcc(*args, timeout=600)
    assert run.returncode == 0, run.stderr
    return run


@pytest.mark.parametrize(
    "config, output, kind, ops",
    [
        (
            "second_fpn.toml",
            "second_fpn.onnx",
            "qdq",
            {"QuantizeLinear": 27, "DequantizeLinear": 27, "Conv": 13, "ConvTranspose": 1},
        ),
        (
            "sparse_encoder.toml",
            "lidar.backbone.xyz.onnx",
            "libspconv",
            {
                "SparseConvolution": 21,
                "Add": 8,
                "Relu": 8,
                "ScatterDense": 1,
                "Transpose": 1,
                "Reshape": 1,
            },
        ),
    ],
)
def test_config_compiles_to_a_lint_clean_file(tmp_path, config, output, kind, ops):
    out = tmp_path / output
    _bevcc("compile", "--config", CONFIGS / config, "-o", out)
    report = json.loads(_bevcc("lint", out, "--json").stdout)
    assert (report["kind"], report["errors"], report["predicted_reformats"]) == (kind, 0, 0)
    counts = collections.Counter(n.op_type for n in onnx.load(out).graph.node)
    assert {op: counts[op] for op in ops} == ops
