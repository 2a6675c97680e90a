"""The reference's layer structure mirrors mit-han-lab's ResNet-50 ConvFuser config."""

import torch
from bevcc_bevfusion.camera import CameraBackbone
from bevcc_bevfusion.fuser import FuserDecoder
from bevcc_bevfusion.model import BEVFusion, scene_inputs
from bevcc_bevfusion.presets import FULL, SMALL
from bevcc_bevfusion.scenes import scene
from torch import nn


def count(module, kind):
    return sum(isinstance(m, kind) for m in module.modules())


def test_full_size_subnets_have_the_real_widths_and_layers():
    camera = CameraBackbone(FULL)
    lateral = [seq[0] for seq in camera.neck.lateral_convs]
    # GeneralizedLSSFPN: 1024 + 2048 -> 256 at the top, 512 + 256 -> 256 below
    assert [(c.in_channels, c.out_channels) for c in lateral] == [(768, 256), (3072, 256)]
    assert camera.depthnet[-1].out_channels == 118 + 80  # 118 depth bins + 80 feature channels
    decoder = FuserDecoder(FULL)
    assert decoder.fuser.fuse[0].in_channels == 80 + 256
    assert count(decoder.backbone, nn.Conv2d) == 12  # SECOND: 2 x (1 strided + 5)
    assert count(decoder.neck, nn.ConvTranspose2d) == 1
    assert sum(block[0].out_channels for block in decoder.neck.deblocks) == 512
    assert FULL.sparse_shape == (1440, 1440, 41) and FULL.bev_cells == 180


def test_small_model_runs_a_scene_end_to_end():
    model = BEVFusion(SMALL).eval()
    record = {}
    with torch.no_grad():
        out = model(*scene_inputs(scene("val", 0, SMALL)), record)
    assert record["camera.backbone"][1][0].shape == (6, SMALL.depth_bins, 8, 22)
    assert record["fuser"][0][0].shape == (1, 16, 32, 32)  # camera BEV
    assert record["fuser"][0][1].shape == (1, 64, 32, 32)  # lidar BEV: 32 ch x 2 z cells
    assert out[1].shape == (1, SMALL.num_proposals)
    # the depth distribution is a distribution
    torch.testing.assert_close(record["camera.backbone"][1][0].sum(1), torch.ones(6, 8, 22))
