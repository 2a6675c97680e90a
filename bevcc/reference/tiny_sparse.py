"""A small spconv lidar encoder with every pattern bn_fold and the sparse passes meet.

SparseSequential (SubMConv3d + BatchNorm1d + ReLU), a residual sparse basic block written the way
mmdet3d writes it (features read and replaced by hand, identity Add), a strided SparseConv3d and a
SparseInverseConv3d back up, then the dense BEV-like output. Needs the `spconv` extra.
"""

from __future__ import annotations

import torch
from torch import nn


def _spconv():
    import spconv.pytorch as spconv  # optional dependency: imported only when used

    return spconv


def sparse_basic_block(channels: int, indice_key: str):
    spconv = _spconv()

    class SparseBasicBlock(spconv.SparseModule):
        """conv-bn-relu-conv-bn, identity added to the features, relu (as in mmdet3d)."""

        def __init__(self):
            super().__init__()
            self.conv1 = spconv.SubMConv3d(
                channels, channels, 3, padding=1, bias=False, indice_key=indice_key
            )
            self.bn1 = nn.BatchNorm1d(channels)
            self.relu = nn.ReLU()
            self.conv2 = spconv.SubMConv3d(
                channels, channels, 3, padding=1, bias=False, indice_key=indice_key
            )
            self.bn2 = nn.BatchNorm1d(channels)

        def forward(self, x):
            identity = x
            out = self.conv1(x)
            out = out.replace_feature(self.relu(self.bn1(out.features)))
            out = self.conv2(out)
            out = out.replace_feature(self.bn2(out.features))
            out = out.replace_feature(out.features + identity.features)
            return out.replace_feature(self.relu(out.features))

    return SparseBasicBlock()


class TinySparseEncoder(nn.Module):
    def __init__(
        self, in_channels: int = 4, width: int = 8, sparse_shape: tuple[int, int, int] = (16, 16, 8)
    ):
        super().__init__()
        spconv = _spconv()
        self.sparse_shape = list(sparse_shape)
        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(in_channels, width, 3, padding=1, bias=False, indice_key="subm1"),
            nn.BatchNorm1d(width),
            nn.ReLU(),
        )
        self.block = sparse_basic_block(width, "subm1")
        self.down = spconv.SparseSequential(
            spconv.SparseConv3d(
                width, 2 * width, 3, stride=2, padding=1, bias=False, indice_key="down1"
            ),
            nn.BatchNorm1d(2 * width),
            nn.ReLU(),
        )
        self.up = spconv.SparseSequential(
            spconv.SparseInverseConv3d(2 * width, width, 3, bias=False, indice_key="down1"),
            nn.BatchNorm1d(width),
            nn.ReLU(),
        )

    def forward(self, voxel_features, coors):
        spconv = _spconv()
        x = spconv.SparseConvTensor(voxel_features, coors, self.sparse_shape, 1)
        x = self.conv_input(x)
        x = self.block(x)
        x = self.up(self.down(x))
        return x.dense()


def random_voxels(
    seed: int = 0,
    count: int = 160,
    spatial_shape=(16, 16, 8),
    channels: int = 4,
    dtype=torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic voxels: unique int32 coordinates [N, 4] (batch 0 first) and features [N, C]."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.tensor(spatial_shape)
    coords = torch.unique((torch.rand(count, 3, generator=g) * grid).long(), dim=0)
    coors = torch.cat([torch.zeros(len(coords), 1, dtype=torch.long), coords], 1).int()
    features = torch.randn(len(coors), channels, generator=g, dtype=dtype)
    return features, coors


def tiny_sparse():
    """Registered model builder: (module, example inputs)."""
    from bevcc.reference.seeding import seeded

    model, _ = seeded(TinySparseEncoder, seed=0)
    return model.eval(), random_voxels()


class SparseBlockChain(nn.Module):
    """An input SubMConv3d + BN, then `blocks` residual sparse basic blocks (for scaling tests)."""

    def __init__(self, blocks: int, width: int = 4, sparse_shape=(16, 16, 8)):
        super().__init__()
        spconv = _spconv()
        self.sparse_shape = list(sparse_shape)
        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(4, width, 3, padding=1, bias=False, indice_key="subm1"),
            nn.BatchNorm1d(width),
            nn.ReLU(),
        )
        self.blocks = spconv.SparseSequential(
            *[sparse_basic_block(width, "subm1") for _ in range(blocks)]
        )

    def forward(self, voxel_features, coors):
        x = _spconv().SparseConvTensor(voxel_features, coors, self.sparse_shape, 1)
        return self.blocks(self.conv_input(x)).features
