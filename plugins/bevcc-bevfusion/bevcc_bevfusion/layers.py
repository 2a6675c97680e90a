"""Conv + BatchNorm + ReLU, the unit every BEVFusion subnet is built from (mmcv's ConvModule)."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(
    cin: int, cout: int, kernel: int, stride: int = 1, eps: float = 1e-5, dims: int = 2
) -> nn.Sequential:
    conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(
        cin, cout, kernel, stride, kernel // 2, bias=False
    )
    norm = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(cout, eps=eps)
    return nn.Sequential(conv, norm, nn.ReLU())
