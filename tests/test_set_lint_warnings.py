"""A set's report carries lint's TensorRT limit warnings per file: a head whose TopK takes
K = classes x H x W compiles (the file is valid ONNX) and its report.json entry and report.md
section say what the engine build will reject, as `bevcc lint --json` does for the same file."""

from __future__ import annotations

import json

from bevcc.testing import NO_PLUGINS
from tests.conftest import run_bevcc
from tests.test_lint_limits import CLASSES, TOO_MANY, H, W, heatmap_topk


def test_a_sets_report_has_each_files_limit_warnings(tmp_path):
    heatmap_topk(tmp_path / "head.onnx", k=CLASSES * H * W)
    heatmap_topk(tmp_path / "small_head.onnx", k=200)  # K = 200: within the limit
    (tmp_path / "set.toml").write_text(
        'output = "set"\n'
        '[[files]]\nname = "head"\ninput = "head.onnx"\npipeline = "onnx(check)"\n'
        'precision = "fp32"\n'
        '[[files]]\nname = "small_head"\ninput = "small_head.onnx"\npipeline = "onnx(check)"\n'
        'precision = "fp32"\n'
    )
    proc = run_bevcc("compile", "--config", tmp_path / "set.toml", env_extra=NO_PLUGINS)
    assert proc.returncode == 0, proc.stderr  # warnings, not errors
    report = json.loads((tmp_path / "set" / "report.json").read_text())
    lint = {entry["name"]: entry["lint"] for entry in report["files"]}
    assert lint["head"]["warnings"] == [TOO_MANY]
    assert lint["small_head"]["warnings"] == []
    assert lint["head"]["errors"] == 0  # a warning is not counted as an error
    # the same lines `bevcc lint --json` gives for the written file
    alone = run_bevcc("lint", "--json", tmp_path / "set" / "head.onnx")
    assert json.loads(alone.stdout)["warnings"] == lint["head"]["warnings"]
    text = (tmp_path / "set" / "report.md").read_text()
    head = text[text.index("## head\n") : text.index("## small_head\n")]
    assert "- lint (qdq): 0 error(s), 0 predicted Reformat(s), 1 warning(s)" in head
    assert f"  - warning: {TOO_MANY}" in head
    assert "warning" not in text[text.index("## small_head\n") :]
    summary = text[: text.index("## head\n")]
    assert "TensorRT limit warnings: `head.onnx` 1 (see its section)" in summary
