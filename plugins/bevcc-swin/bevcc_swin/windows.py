"""Window partition/reverse and the shifted-window attention mask.

The mask is built from the feature map's height and width, which FX tracing only knows as
proxies: `torch.zeros((1, h, w, 1))`, Python slices and in-place writes cannot run on them. The
plugin registers `shifted_window_mask` as a leaf function, so tracing records it as one node and
export turns it into a constant (it depends on shapes only, never on pixel values).
"""

from __future__ import annotations

import torch

# Scores of token pairs from different regions of a shifted window get this added before the
# softmax: exp(-100) is 0 in float32, so they cannot attend to each other.
MASKED = -100.0


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * windows, window * window, C]."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h, w) -> torch.Tensor:
    """[B * windows, window * window, C] -> [B, H, W, C]."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shifted_window_mask(h, w, window: int, shift: int) -> torch.Tensor:
    """[windows, window * window, window * window]: 0 within a region, MASKED across regions."""
    h, w = int(h), int(w)
    regions = torch.zeros((1, h, w, 1))
    spans = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in spans:
        for cols in spans:
            regions[:, rows, cols, :] = label
            label += 1
    labels = window_partition(regions, window).squeeze(-1)
    differ = labels.unsqueeze(1) != labels.unsqueeze(2)
    return torch.zeros(differ.shape).masked_fill(differ, MASKED)
