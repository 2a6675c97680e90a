"""head.bbox.onnx: a TransFusion-style detection head, kept float as CUDA-BEVFusion keeps it.

A dense class heatmap picks the top-K local maxima as object queries (query initialisation); one
transformer decoder layer lets each query attend to the other queries and to the whole BEV map;
small FFN heads predict class, centre offset, height, size and heading per query. Positions are
in BEV cell units (cell (i, j) has its centre at (i + 0.5, j + 0.5))."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from bevcc_bevfusion.layers import conv_bn_relu
from bevcc_bevfusion.presets import CLASSES, Preset
from torch import nn

HEATMAP_PRIOR = -2.19  # sigmoid = 0.1: TransFusion's heatmap bias init
REGRESSION = {"center": 2, "height": 1, "dim": 3, "rot": 2}
OUTPUTS = (
    "dense_heatmap",
    "query_label",
    "query_score",
    "query_cell",
    "center",
    "height",
    "dim",
    "rot",
    "heatmap",
)


class Attention(nn.Module):
    """Multi-head attention written with MatMul + Softmax, so every exporter writes the same ops."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads  # ints, so FX traces no shape arithmetic
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, query, key, value):  # [B, Lq, C], [B, Lk, C], [B, Lk, C]
        q, k, v = self._split(self.q(query)), self._split(self.k(key)), self._split(self.v(value))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        merged = (weights @ v).transpose(1, 2)
        return self.out(merged.reshape(1, -1, self.heads * self.head_dim))

    def _split(self, x):  # [1, L, C] -> [1, heads, L, head_dim] (batch 1, as deployed)
        return x.reshape(1, -1, self.heads, self.head_dim).transpose(1, 2)


class PositionEmbedding(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    def forward(self, positions):
        return self.net(positions)


class DecoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int = 2):
        super().__init__()
        self.self_attn, self.cross_attn = Attention(hidden, heads), Attention(hidden, heads)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, hidden * 2), nn.ReLU(), nn.Linear(hidden * 2, hidden)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(3))

    def forward(self, query, query_pos, memory, memory_pos):
        q = query + query_pos
        query = self.norms[0](query + self.self_attn(q, q, query))
        query = self.norms[1](
            query + self.cross_attn(query + query_pos, memory + memory_pos, memory)
        )
        return self.norms[2](query + self.ffn(query))


class TransFusionHead(nn.Module):
    def __init__(self, preset: Preset):
        super().__init__()
        hidden, classes = preset.head_hidden, len(CLASSES)
        self.num_proposals, self.cells = preset.num_proposals, preset.bev_cells
        self.num_classes = classes
        self.shared_conv = nn.Conv2d(sum(preset.fpn_out_channels), hidden, 3, padding=1)
        self.heatmap_head = nn.Sequential(
            conv_bn_relu(hidden, hidden, 3), nn.Conv2d(hidden, classes, 3, padding=1)
        )
        nn.init.constant_(self.heatmap_head[-1].bias, HEATMAP_PRIOR)
        self.class_encoding = nn.Linear(classes, hidden)
        self.position = PositionEmbedding(hidden)
        self.decoder = DecoderLayer(hidden)
        self.predict = nn.ModuleDict(
            {
                name: nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, size))
                for name, size in {**REGRESSION, "heatmap": classes}.items()
            }
        )
        rows, cols = torch.meshgrid(
            torch.arange(self.cells), torch.arange(self.cells), indexing="ij"
        )
        grid = torch.stack([rows, cols], -1).reshape(-1, 2).float() + 0.5
        self.register_buffer("bev_pos", grid, persistent=False)

    def forward(self, bev):
        """bev [1, C, X, Y] -> a tuple in the order of OUTPUTS (an exported file's outputs)."""
        feat = self.shared_conv(bev)
        dense = self.heatmap_head(feat)  # [1, classes, X, Y] logits
        heat = dense.sigmoid()
        peaks = heat * (heat == F.max_pool2d(heat, 3, 1, 1)).float()
        classes = self.num_classes
        score, flat = peaks.reshape(1, -1).topk(self.num_proposals, dim=1)
        label, cell = flat // (self.cells * self.cells), flat % (self.cells * self.cells)
        memory = feat.flatten(2).transpose(1, 2)  # [1, XY, hidden]
        query = memory[0, cell[0]][None] + self.class_encoding(F.one_hot(label, classes).float())
        query_pos = self.bev_pos[cell[0]][None]  # [1, Q, 2]
        scale = 1.0 / self.cells
        query = self.decoder(
            query,
            self.position(query_pos * scale),
            memory,
            self.position(self.bev_pos[None] * scale),
        )
        out = {name: head(query) for name, head in self.predict.items()}
        return (
            dense,
            label,
            score,
            cell,
            out["center"] + query_pos,
            out["height"],
            out["dim"],
            out["rot"],
            out["heatmap"],
        )


def as_dict(outputs) -> dict:
    return dict(zip(OUTPUTS, outputs, strict=True))


def decode(outputs, preset: Preset) -> dict:
    """Per-query boxes in metres with TransFusion's score: class probability x heatmap score,
    for the query's heatmap class."""
    outputs = outputs if isinstance(outputs, dict) else as_dict(outputs)
    lo, _, cell = preset.xbound
    bev_cell = cell * 2  # the fused map is the camera grid downsampled 2x
    label = outputs["query_label"][0]
    prob = outputs["heatmap"][0].sigmoid().gather(1, label[:, None])[:, 0]
    return {
        "label": label,
        "score": prob * outputs["query_score"][0],
        "xy": lo + outputs["center"][0] * bev_cell,
    }
