"""The MAC share `bevcc sensitivity` reports per unit, against a hand count. A ConvTranspose does
its multiply-accumulates per INPUT element: N x Cin x H_in x W_in x Cout/groups x kH x kW (a
Conv's are per output element). Before its count looked through the input quantizer qdq_insert
puts in front of it, the FX report gave the ConvTranspose 0%."""

from __future__ import annotations

import json

import pytest

from bevcc.testing import NO_PLUGINS
from tests.conftest import run_bevcc

MODEL = """\
import numpy as np
import torch
from torch import nn


class Up(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1)  # [1,4,16,16] -> [1,8,8,8]
        self.up = nn.ConvTranspose2d(8, 6, 2, stride=2, groups=2)  # -> [1,6,16,16]
        self.head = nn.Conv2d(6, 2, 1)  # -> [1,2,16,16]

    def forward(self, x):
        return self.head(torch.relu(self.up(torch.relu(self.down(x)))))


def build():
    torch.manual_seed(0)
    return Up().eval(), (torch.randn(1, 4, 16, 16),)


def calib():
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((1, 4, 16, 16)).astype("float32")} for _ in range(4)]
"""
HAND = {  # MACs by hand
    "down": 1 * 8 * 8 * 8 * (4 * 3 * 3),  # per output element: Cin x kH x kW
    "up": 1 * 8 * 8 * 8 * (6 // 2) * 2 * 2,  # per input element: Cout/groups x kH x kW
    "head": 1 * 2 * 16 * 16 * 6,
}
ONNX_NAMES = {"down": "/down/Conv", "up": "/up/ConvTranspose", "head": "/head/Conv"}


def shares(directory) -> dict[str, float]:
    report = json.loads((directory / "sensitivity.json").read_text())
    return {row["unit"]: row["mac_share"] for row in report["units"]}


def expected(names: dict[str, str]) -> dict[str, float]:
    total = sum(HAND.values())
    return {names[layer]: pytest.approx(macs / total, rel=1e-12) for layer, macs in HAND.items()}


def test_a_conv_transpose_has_its_hand_counted_mac_share_on_both_irs(tmp_path):
    (tmp_path / "up.py").write_text(MODEL)
    assert HAND["up"] == 6144  # 22% of the model: what the report used to show as 0%
    common = ["--calib", "up.py:calib", "--top-k", "1", "--eval-batches", "1"]
    fx = run_bevcc("sensitivity", "up.py:build", *common, "-o", "fx", cwd=tmp_path,
                   env_extra=NO_PLUGINS)  # fmt: skip
    assert fx.returncode == 0, fx.stderr
    assert shares(tmp_path / "fx") == expected({name: name for name in HAND})
    exported = run_bevcc("compile", "up.py:build", "-o", "up.onnx", cwd=tmp_path,
                         env_extra=NO_PLUGINS)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    onnx = run_bevcc("sensitivity", "up.onnx", *common, "-o", "onnx", cwd=tmp_path,
                     env_extra=NO_PLUGINS)  # fmt: skip
    assert onnx.returncode == 0, onnx.stderr
    assert shares(tmp_path / "onnx") == expected(ONNX_NAMES)
