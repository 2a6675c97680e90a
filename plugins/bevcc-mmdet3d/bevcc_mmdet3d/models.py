"""The plugin's models: mmdet3d modules built from config dicts (configs.py), ready for bevcc.

Builders return (module, example_inputs) as `bevcc compile NAME` and config TOMLs take them.
Weights are seeded with non-trivial BatchNorm statistics (so folding is exercised) unless a
checkpoint is given. The sparse encoder is specialized to its example inputs (bevcc.ir.specialize,
through specialize.py), so callers get the GraphModule the frontend would trace.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bevcc.reference import random_voxels, randomize_batchnorm, seeded
from bevcc_mmdet3d import configs, mm
from bevcc_mmdet3d.specialize import specialize

SMALL_BEV = 32  # test-size BEV grid for the decoder (BEVFusion: 180)
SMALL_SPARSE_SHAPE = (41, 64, 64)  # test-size zyx grid (BEVFusion: 41 x 1440 x 1440)


class Chain(nn.Module):
    """Modules built from config dicts, each fed the previous one's output (BEVFusion's decoder
    is backbone then neck)."""

    def __init__(self, *modules: nn.Module):
        super().__init__()
        self.stages = nn.ModuleList(modules)

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


def from_config(config: dict, checkpoint=None, seed: int = 0, prefix: str = "") -> nn.Module:
    """An eval-mode module from an mmdet3d config dict, with a checkpoint's weights or seeded."""
    if checkpoint is not None:
        return mm.load_checkpoint(mm.build(config), checkpoint, prefix).eval()
    model, generator = seeded(lambda: mm.build(config), seed)
    randomize_batchnorm(model, generator)
    return model.eval()


def second_fpn(seed: int = 0, bev: int = SMALL_BEV, checkpoint=None):
    """SECOND + SECONDFPN (BEVFusion's decoder) on a [1, 256, bev, bev] BEV map."""
    model, generator = seeded(
        lambda: Chain(mm.build(configs.SECOND, "SECOND"), mm.build(configs.SECONDFPN, "SECONDFPN")),
        seed,
    )
    randomize_batchnorm(model, generator)
    if checkpoint is not None:
        mm.load_checkpoint(model, checkpoint)
    return model.eval(), (bev_inputs(seed, bev),)


def bev_inputs(seed: int, bev: int = SMALL_BEV) -> torch.Tensor:
    return torch.randn(1, 256, bev, bev, generator=torch.Generator().manual_seed(seed))


def second_fpn_calib(count: int = 4, bev: int = SMALL_BEV) -> list[dict]:
    return [{"x": bev_inputs(100 + i, bev).numpy()} for i in range(count)]


def sparse_encoder_module(seed: int = 0, sparse_shape=SMALL_SPARSE_SHAPE, checkpoint=None):
    config = dict(copy.deepcopy(configs.SPARSE_ENCODER), sparse_shape=list(sparse_shape))
    return from_config(config, checkpoint, seed)


def sparse_encoder(
    seed: int = 0, sparse_shape=SMALL_SPARSE_SHAPE, voxels: int = 600, checkpoint=None
):
    """mmdet3d's SparseEncoder (BEVFusion's nuScenes config), specialized to batch size 1:
    inputs voxel_features [N, 5] and coors [N, 4] as (batch, z, y, x) int32."""
    model = sparse_encoder_module(seed, sparse_shape, checkpoint)
    features, coors = random_voxels(seed, voxels, sparse_shape, channels=5)
    return specialize(model, (features, coors, 1))


def sparse_encoder_calib(
    count: int = 4, sparse_shape=SMALL_SPARSE_SHAPE, voxels: int = 600
) -> list[dict]:
    batches = []
    for i in range(count):
        features, coors = random_voxels(200 + i, voxels, sparse_shape, channels=5)
        batches.append({"voxel_features": features.numpy(), "coors": coors.numpy()})
    return batches


def resnet(seed: int = 0, depth: int = 18, size: int = 64):
    """mmdet's ResNet (depth 18/34/50) on a [1, 3, size, size] image; outputs stages 2-4."""
    model = from_config(dict(configs.RESNET, depth=depth), seed=seed)
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return model, (image,)


REGISTERED = {
    "mmdet3d_second_fpn": second_fpn,
    "mmdet3d_sparse_encoder": sparse_encoder,
    "mmdet3d_resnet": resnet,
}
