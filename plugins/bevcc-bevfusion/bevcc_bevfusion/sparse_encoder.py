"""BEVFusion's lidar backbone (mmdet3d SparseEncoder as mit-han-lab's ResNet50 config uses it),
in plain spconv 2.x, xyz order.

in 5 channels, sparse_shape [1440, 1440, 41] (x, y, z), encoder channels
[[16, 16, 32], [32, 32, 64], [64, 64, 128], [128, 128]] with residual sparse basic blocks, a
strided (1, 1, 3) output conv, and the dense BEV map: 128 channels x 2 z-cells = 256 channels at
180 x 180. That is 21 sparse convs and 8 residual Adds. `sparse_shape` can be made smaller for
tests. `base_channels` scales every width (16 is the real network); the layer structure stays.
"""

from __future__ import annotations

from torch import nn

from bevcc.reference import random_voxels, sparse_basic_block

ENCODER_CHANNELS = ((16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 128))
ENCODER_PADDINGS = ((0, 0, 1), (0, 0, 1), (0, 0, (1, 1, 0)), (0, 0))


def _spconv():
    import spconv.pytorch as spconv

    return spconv


def _conv_bn_relu(conv):
    spconv = _spconv()
    return spconv.SparseSequential(
        conv, nn.BatchNorm1d(conv.out_channels, eps=1e-3, momentum=0.01), nn.ReLU()
    )


class SparseEncoder(nn.Module):
    def __init__(
        self,
        in_channels: int = 5,
        sparse_shape=(1440, 1440, 41),
        output_channels: int = 128,
        base_channels: int = 16,
    ):
        super().__init__()
        spconv = _spconv()
        self.sparse_shape = list(sparse_shape)
        in_ch = base_channels
        self.conv_input = _conv_bn_relu(
            spconv.SubMConv3d(in_channels, in_ch, 3, padding=1, bias=False, indice_key="subm1")
        )
        stages = []
        for i, (channels, paddings) in enumerate(
            zip(ENCODER_CHANNELS, ENCODER_PADDINGS, strict=True)
        ):
            layers = []
            for j, (real_ch, padding) in enumerate(zip(channels, paddings, strict=True)):
                out_ch = real_ch * base_channels // 16
                last = j == len(channels) - 1
                if last and i != len(ENCODER_CHANNELS) - 1:
                    layers.append(
                        _conv_bn_relu(
                            spconv.SparseConv3d(
                                in_ch,
                                out_ch,
                                3,
                                stride=2,
                                padding=padding,
                                bias=False,
                                indice_key=f"spconv{i + 1}",
                            )
                        )
                    )
                else:
                    layers.append(sparse_basic_block(out_ch, f"subm{i + 1}"))
                in_ch = out_ch
            stages.append(spconv.SparseSequential(*layers))
        self.encoder_layers = spconv.SparseSequential(*stages)
        self.conv_out = _conv_bn_relu(
            spconv.SparseConv3d(
                in_ch,
                output_channels,
                (1, 1, 3),
                stride=(1, 1, 2),
                padding=0,
                bias=False,
                indice_key="spconv_down2",
            )
        )

    def forward(self, voxel_features, coors):
        spconv = _spconv()
        x = spconv.SparseConvTensor(voxel_features, coors, self.sparse_shape, 1)
        x = self.conv_out(self.encoder_layers(self.conv_input(x)))
        dense = x.dense()  # [N, C, X, Y, Z]
        # BEV: z folded into channels -> [N, C * Z, X, Y] (BEVFusion's permute + view)
        return dense.permute(0, 1, 4, 2, 3).contiguous().flatten(1, 2)


def sparse_encoder(seed: int = 0, sparse_shape=(1440, 1440, 41), voxels: int = 4000):
    """(model in eval mode with non-trivial BN statistics, (voxel features, coords))."""
    from bevcc.reference import seeded

    model, _ = seeded(lambda: SparseEncoder(sparse_shape=sparse_shape), seed)
    return model.eval(), random_voxels(seed, voxels, sparse_shape, channels=5)


def small_sparse_encoder(seed: int = 0):
    """The real layer structure on a 64 x 64 x 41 grid: fast enough for tests on CPU."""
    return sparse_encoder(seed, (64, 64, 41), voxels=600)


def calibration_batches(
    count: int = 4, sparse_shape=(1440, 1440, 41), voxels: int = 4000, seed: int = 1
) -> list[dict]:
    """Random voxel batches (features and int32 coords) for `sparse_encoder`, as the CLI's
    `--calib bevcc_bevfusion.sparse_encoder:calibration_batches` takes them."""
    batches = []
    for i in range(count):
        features, coors = random_voxels(seed + i, voxels, sparse_shape, channels=5)
        batches.append({"voxel_features": features.numpy(), "coors": coors.numpy()})
    return batches
