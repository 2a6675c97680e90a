"""A Swin-Transformer camera backbone in plain torch (the family BEVFusion's Swin-T belongs to).

Patch embedding conv, then stages of blocks: LayerNorm, (shifted) window attention with a
relative position bias, residual Add, LayerNorm, GELU MLP, residual Add; patch merging between
stages. Like mmdet's Swin, blocks read the feature map's height and width at run time, so one
module serves any input whose patch grid the windows tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bevcc_swin.windows import shifted_window_mask, window_partition, window_reverse


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int = 32
    depths: tuple[int, ...] = (2, 2)
    heads: tuple[int, ...] = (2, 4)  # head size 16 in every stage: TensorRT's INT8 MHA sizes
    window: int = 7
    patch: int = 4
    mlp_ratio: int = 4


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("bias_index", _relative_index(window), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        windows, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(windows, tokens, 3, self.heads, dim // self.heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.bias_table[self.bias_index.view(-1)].view(tokens, tokens, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            count = mask.shape[0]
            attn = attn.view(-1, count, self.heads, tokens, tokens) + mask.unsqueeze(1)
            attn = attn.view(-1, self.heads, tokens, tokens)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(windows, tokens, dim)
        return self.proj(x)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: int):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, x: torch.Tensor, h, w) -> torch.Tensor:
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        mask = None
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shifted_window_mask(h, w, self.window, self.shift)
        x = self.attn(window_partition(x, self.window), mask)
        x = window_reverse(x, self.window, h, w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + x.reshape(b, -1, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens -> one token of twice the width."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, h, w) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1
        )
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinBackbone(nn.Module):
    """[B, 3, H, W] image -> [B, C_last, H / (patch * 2^(stages-1)), ...] feature map."""

    def __init__(self, config: SwinConfig = SwinConfig()):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = nn.Conv2d(3, dim, config.patch, stride=config.patch)
        self.embed_norm = nn.LayerNorm(dim)
        self.stages = nn.ModuleList()
        self.merges = nn.ModuleList()
        for index, (depth, heads) in enumerate(zip(config.depths, config.heads, strict=True)):
            if index:
                self.merges.append(PatchMerging(dim))
                dim *= 2
            self.stages.append(
                nn.ModuleList(
                    SwinBlock(
                        dim,
                        heads,
                        config.window,
                        shift=(i % 2) * (config.window // 2),
                        mlp_ratio=config.mlp_ratio,
                    )
                    for i in range(depth)
                )
            )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        b, _, h, w = x.shape
        x = self.embed_norm(x.flatten(2).transpose(1, 2))
        for index, blocks in enumerate(self.stages):
            if index:
                x = self.merges[index - 1](x, h, w)
                h, w = h // 2, w // 2
            for block in blocks:
                x = block(x, h, w)
        x = self.norm(x)
        return x.view(b, h, w, -1).permute(0, 3, 1, 2)


def _relative_index(window: int) -> torch.Tensor:
    """[window^2, window^2] index into the bias table for each (query, key) token pair."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]
