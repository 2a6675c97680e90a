"""A tiny BEV-style CNN with the patterns the passes care about: conv-BN-ReLU, residual Add,
Concat of two branches, a 1x1 fuse conv and a ConvTranspose upsample."""

from __future__ import annotations

import torch
from torch import nn

from bevcc.reference.seeding import seeded


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=False),
        )


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvBNReLU(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn2(self.conv2(self.conv1(x))) + x)


class TinyCNN(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 16):
        super().__init__()
        self.stem = ConvBNReLU(in_channels, width)
        self.block = ResidualBlock(width)
        self.down = ConvBNReLU(width, 2 * width, stride=2)
        self.lateral = nn.Conv2d(width, width, 1)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2, bias=False)
        self.up_bn = nn.BatchNorm2d(width)
        self.fuse = ConvBNReLU(2 * width, width, kernel=1)
        self.head = nn.Conv2d(width, 4, 1)

    def forward(self, x):
        x = self.block(self.stem(x))
        upsampled = torch.relu(self.up_bn(self.up(self.down(x))))
        return self.head(self.fuse(torch.cat([self.lateral(x), upsampled], dim=1)))


def tiny_cnn(seed: int = 0, size: int = 32):
    """Build TinyCNN with deterministic weights and non-trivial BN statistics, in eval mode."""
    model, generator = seeded(TinyCNN, seed)
    example = torch.randn(1, 3, size, size, generator=generator)
    return model.eval(), (example,)


def calibration_batches(count: int = 8, batch: int = 4, size: int = 32, seed: int = 1):
    """Deterministic calibration batches for tiny_cnn (input name `x`), for the README's main job:
    `--calib bevcc.reference.tiny_cnn:calibration_batches`."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {"x": torch.randn(batch, 3, size, size, generator=generator).numpy()} for _ in range(count)
    ]
