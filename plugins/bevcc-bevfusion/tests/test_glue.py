"""The runtime glue between the files: BEV pool and voxelization, against direct references."""

import numpy as np
import pytest
import torch
from bevcc_bevfusion.bevpool import BEVPool
from bevcc_bevfusion.lidar import voxelize
from bevcc_bevfusion.presets import SMALL
from bevcc_bevfusion.rig import cameras


def test_a_front_camera_feature_lands_in_the_cell_in_front():
    pool = BEVPool(SMALL)
    fh, fw = SMALL.feature_size
    probs = torch.zeros(6, SMALL.depth_bins, fh, fw)
    features = torch.zeros(6, fh, fw, 2)
    # depth bin 9 starts at 10 m; the feature column whose pixel is nearest the image centre
    column = int(
        np.argmin(np.abs(np.linspace(0, SMALL.image_size[1] - 1, fw) - SMALL.image_size[1] / 2))
    )
    probs[0, 9, fh - 1, column] = 1.0
    features[0, fh - 1, column] = torch.tensor([3.0, -1.0])
    bev = pool(probs, features)
    nonzero = torch.nonzero(bev[0, 0])
    assert nonzero.tolist() == [[32 + 10, 31]] or nonzero.tolist() == [[32 + 10, 32]]
    assert bev[0, :, nonzero[0, 0], nonzero[0, 1]].tolist() == [3.0, -1.0]


def test_bev_pool_equals_a_point_by_point_sum():
    torch.manual_seed(0)
    pool = BEVPool(SMALL)
    fh, fw = SMALL.feature_size
    probs = torch.rand(6, SMALL.depth_bins, fh, fw).softmax(1)
    features = torch.randn(6, fh, fw, 3)
    bev = pool(probs, features)
    # reference: lift every frustum point with the camera model and add it to its cell
    expected = np.zeros((3, 64, 64))
    lo, _, cell = SMALL.xbound
    depths = np.arange(*SMALL.dbound)
    us = np.linspace(0, SMALL.image_size[1] - 1, fw)
    vs = np.linspace(0, SMALL.image_size[0] - 1, fh)
    for c, camera in enumerate(cameras(SMALL.image_size)):
        k_inv = np.linalg.inv(camera.intrinsics)
        for d_index, depth in enumerate(depths):
            for row, v in enumerate(vs):
                for col, u in enumerate(us):
                    point = (
                        camera.rotation @ (k_inv @ np.array([u, v, 1.0]) * depth) + camera.position
                    )
                    i, j = np.floor((point[:2] - lo) / cell).astype(int)
                    if 0 <= i < 64 and 0 <= j < 64 and -10 <= point[2] < 10:
                        expected[:, i, j] += (
                            probs[c, d_index, row, col] * features[c, row, col]
                        ).numpy()
    np.testing.assert_allclose(bev[0].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_voxelize_means_the_points_of_each_voxel():
    rng = np.random.default_rng(0)
    points = np.concatenate(
        [rng.uniform(-33, 33, (500, 2)), rng.uniform(-6, 4, (500, 1)), rng.random((500, 2))], 1
    ).astype(np.float32)
    points = np.concatenate([points, points[:100] + 0.01])  # shared voxels
    features, coords = voxelize(torch.from_numpy(points), SMALL)
    lo = np.array(SMALL.point_range[:3])
    hi = np.array(SMALL.point_range[3:])
    groups = {}
    for p in points:
        if (p[:3] >= lo).all() and (p[:3] < hi).all():
            key = tuple(np.floor((p[:3] - lo) / SMALL.voxel_size).astype(int))
            groups.setdefault(key, []).append(p)
    assert len(coords) == len(groups)
    assert coords.dtype == torch.int32 and (coords[:, 0] == 0).all()
    for coord, feature in zip(coords[:, 1:].tolist(), features.numpy(), strict=True):
        np.testing.assert_allclose(feature, np.mean(groups[tuple(coord)], 0), rtol=1e-5, atol=1e-5)
    assert max(len(g) for g in groups.values()) > 1


@pytest.mark.parametrize("camera", range(6))
def test_projection_inverts_the_pixel_rays(camera):
    cam = cameras(SMALL.image_size)[camera]
    rays = cam.pixel_rays(*SMALL.image_size)
    uv, depth = cam.project(cam.position + rays * 7.0)
    v, u = np.meshgrid(np.arange(64) + 0.5, np.arange(176) + 0.5, indexing="ij")
    np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], 1), atol=1e-9)
    np.testing.assert_allclose(depth, 7.0)
