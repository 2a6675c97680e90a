"""A small network with the three places TensorRT needs shared scales: an FPN-style Concat whose
input also feeds a downsampling conv (and a MaxPool into another conv), and a residual Add whose
identity also feeds the block's first conv (CUDA-BEVFusion's camera FPN and sparse-block cases)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bevcc.reference.seeding import seeded


class FpnResidual(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.stage = nn.Conv2d(width, width, 3, padding=1)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.lateral = nn.Conv2d(2 * width, width, 1)
        self.pool_conv = nn.Conv2d(width, width, 1)
        self.res1 = nn.Conv2d(width, width, 3, padding=1)
        self.res2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, img):
        x = torch.relu(self.stage(torch.relu(self.stem(img))))
        d = torch.relu(self.down(x))  # x: downsample conv input ...
        y = torch.relu(self.lateral(torch.cat([x, self.up(d)], 1)))  # ... and a Concat input
        pooled = self.pool_conv(F.max_pool2d(x, 2))  # ... and through MaxPool into a conv
        return torch.relu(self.res2(torch.relu(self.res1(y))) + y), pooled  # y: conv + identity


def fpn_residual(seed: int = 0, size: int = 16):
    """(model in eval mode, example input); the upsampling branch is scaled up so its values
    exceed the stage output's, as deeper FPN levels often do."""
    model, generator = seeded(FpnResidual, seed)
    with torch.no_grad():
        model.up.weight.mul_(4)
    return model.eval(), (torch.randn(1, 3, size, size, generator=generator),)


def calibration_batches(count: int = 4, batch: int = 4, size: int = 16, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return [
        {"img": torch.randn(batch, 3, size, size, generator=generator).numpy()}
        for _ in range(count)
    ]
