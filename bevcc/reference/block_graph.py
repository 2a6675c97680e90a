"""A chain of N identical residual/concat blocks: a graph whose size grows linearly with N."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from bevcc.reference.seeding import seeded


class Block(nn.Module):
    """conv3x3-BN-ReLU, conv3x3-BN + residual Add + ReLU, a 1x1 branch, Concat, 1x1 fuse."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.branch = nn.Conv2d(channels, channels, 1)
        self.fuse = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x):
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)) + x)
        return self.fuse(torch.cat([y, self.branch(x)], dim=1))


class BlockGraph(nn.Module):
    def __init__(self, blocks: int, channels: int):
        super().__init__()
        self.blocks = nn.Sequential(*(Block(channels) for _ in range(blocks)))

    def forward(self, x):
        return self.blocks(x)


def block_graph(blocks: int = 4, channels: int = 8, size: int = 8, seed: int = 0):
    """Build BlockGraph with deterministic weights and non-trivial BN statistics, in eval mode."""
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    model, generator = seeded(lambda: BlockGraph(blocks, channels), seed)
    example = torch.randn(1, channels, size, size, generator=generator)
    return model.eval(), (example,)


def block_graph_onnx(blocks: int = 4, channels: int = 8, size: int = 8, seed: int = 0):
    """`block_graph` exported to ONNX (opset 17) with its BatchNormalization nodes kept."""
    import onnx

    model, inputs = block_graph(blocks, channels, size, seed)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # Without constant folding the exporter also skips its eval-mode peephole that folds BN
        # into Conv, so the BatchNormalization nodes that BN-folding passes look for stay.
        torch.onnx.export(
            model,
            inputs,
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            do_constant_folding=False,
        )
    return onnx.load_from_string(buffer.getvalue())
