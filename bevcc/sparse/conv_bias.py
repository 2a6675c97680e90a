"""The bias of a BatchNorm-folded sparse conv, applied outside the conv.

spconv's CPU kernels assert ("cpu don't support act and bias") when an eval-mode sparse conv has a
bias, so on CPU bn_fold leaves the conv bias-free and puts this module where the BatchNorm was. It
names its conv, so backends (libspconv export) emit the pair as one conv with this bias.
"""

from __future__ import annotations

import torch
from torch import nn


class SparseConvBias(nn.Module):
    def __init__(self, bias: torch.Tensor, conv: str):
        super().__init__()
        self.bias = nn.Parameter(bias)
        self.conv = conv  # qualified name of the sparse conv this bias belongs to

    def forward(self, x):
        # Called on the features tensor (SparseSequential, hand-written blocks) or, where a
        # SparseBatchNorm was called on the sparse tensor itself, on a SparseConvTensor.
        if hasattr(x, "replace_feature"):
            return x.replace_feature(x.features + self.bias)
        return x + self.bias

    def extra_repr(self) -> str:
        return f"channels={self.bias.numel()}, conv={self.conv!r}"
