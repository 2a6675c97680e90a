"""The installed plugin through the real CLI: `bevcc plugins` lists its metrics, `bevcc
sensitivity --metric nuscenes_map` decides by it, and a missing setting is one line."""

import json
import os
import subprocess
import sys

from bevcc.testing import run_bevcc, scaled_timeout


def test_bevcc_plugins_lists_the_metrics():
    proc = run_bevcc("plugins")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("nuscenes "))
    assert lines[header] == "nuscenes 0.1.0 (bevcc_nuscenes.plugin)"
    assert lines[header + 1] == "  metrics: nuscenes_map, nuscenes_nds"


def test_cli_sensitivity_by_nuscenes_map(tiny, tmp_path):
    env = {
        "BEVCC_NUSCENES_DATAROOT": str(tiny.root),
        "BEVCC_NUSCENES_VERSION": "v1.0-mini",
        "BEVCC_NUSCENES_EVAL_SET": "mini_val",
        "BEVCC_NUSCENES_DECODER": "bevcc_nuscenes.example:decode",
    }
    proc = run_bevcc(
        "sensitivity",
        "bevcc_nuscenes.example:tiny_detector",
        "--calib",
        "bevcc_nuscenes.example:calibration_batches",
        "--prefix",
        "qdq_insert",
        "--metric",
        "nuscenes_map",
        "--max-drop",
        "0.01",
        "-o",
        tmp_path / "out",
        env_extra=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "2 units; kept float: fc2"
    assert json.loads((tmp_path / "out" / "disable_list.json").read_text())["disable"] == ["fc2"]


def test_cli_without_a_dataroot_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEVCC_NUSCENES_")}
    exe = os.path.join(os.path.dirname(sys.executable), "bevcc")
    proc = subprocess.run(
        [
            exe,
            "sensitivity",
            "bevcc_nuscenes.example:tiny_detector",
            "--calib",
            "bevcc_nuscenes.example:calibration_batches",
            "--metric",
            "nuscenes_nds",
            "--max-drop",
            "0.01",
            "-o",
            str(tmp_path / "out"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=scaled_timeout(300),  # bevcc waits on the devkit's interpreter: end a hang
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        (
            "bevcc: error: pass 'sensitivity_disable' failed after [bn_fold, qdq_insert, "
            "quantizer_unify]: nuscenes_nds needs BEVCC_NUSCENES_DATAROOT: set it to the nuScenes "
            "dataroot (see plugins/bevcc-nuscenes/README.md)"
        )
    ]
    assert not (tmp_path / "out" / "disable_list.json").exists()
