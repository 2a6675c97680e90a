"""A small CNN with one planted sensitive layer, for testing sensitivity analysis.

`stem` writes one constant channel of ~200 that `probe` barely uses (weights ~0), so `probe`'s
input scale is set by that channel and every other channel rounds to a few levels: INT8 on
`probe` alone costs far more than on any other layer, while the float output hardly depends on
the planted channel.
"""

from __future__ import annotations

import torch
from torch import nn

from bevcc.reference.seeding import seeded


class Planted(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.probe = nn.Conv2d(9, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.relu(self.body(x))
        planted = torch.full_like(y[:, :1], 200.0)
        z = torch.relu(self.probe(torch.cat([y, planted], 1)))
        return self.head(z + y)


def planted(seed: int = 0, size: int = 16):
    model, generator = seeded(Planted, seed)
    with torch.no_grad():
        model.probe.weight[:, 8] *= 1e-4  # the planted channel barely matters in float
    return model.eval(), (torch.randn(1, 3, size, size, generator=generator),)


def calibration_batches(count: int = 4, batch: int = 4, size: int = 16, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return [
        {"x": torch.randn(batch, 3, size, size, generator=generator).numpy()} for _ in range(count)
    ]
