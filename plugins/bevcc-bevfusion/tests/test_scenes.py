import numpy as np
import pytest
from bevcc_bevfusion import raycast
from bevcc_bevfusion.presets import SMALL
from bevcc_bevfusion.rig import GROUND_Z, cameras
from bevcc_bevfusion.scenes import scene


def test_a_scene_is_the_same_every_time():
    a, b = scene("val", 3, SMALL), scene("val", 3, SMALL)
    for key in vars(a):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.boxes, scene("val", 4, SMALL).boxes)


def test_rays_hit_a_rotated_box_where_geometry_says():
    # a 4 x 2 x 2 box at x = 10 turned by 90 degrees: its 2 m side faces the origin, at x = 9
    box = np.array([[10.0, 0.0, 0.0, 4.0, 2.0, 2.0, np.pi / 2]])
    directions = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, -0.5]])
    distance, hit, normal = raycast.cast(np.zeros(3), directions, box, max_range=100)
    assert distance[0] == pytest.approx(9.0) and hit[0] == 0
    np.testing.assert_allclose(normal[0], [-1, 0, 0], atol=1e-12)
    assert hit[1] == raycast.NO_HIT  # parallel to the ground, nothing there
    # the third ray reaches the ground (z = -1.8) at t = 3.6, before the box
    assert hit[2] == raycast.GROUND and distance[2] == pytest.approx(3.6)


def test_lidar_points_lie_on_the_ground_or_a_box():
    s = scene("val", 0, SMALL)
    xyz = s.points[:, :3].astype(float)
    on_ground = np.abs(xyz[:, 2] - GROUND_Z) < 0.15
    inside_any = np.zeros(len(xyz), bool)
    for x, y, z, length, width, height, yaw in s.boxes:
        rel = xyz - (x, y, z)
        local_x = np.cos(yaw) * rel[:, 0] + np.sin(yaw) * rel[:, 1]
        local_y = -np.sin(yaw) * rel[:, 0] + np.cos(yaw) * rel[:, 1]
        inside_any |= (
            (np.abs(local_x) < length / 2 + 0.1)
            & (np.abs(local_y) < width / 2 + 0.1)
            & (np.abs(rel[:, 2]) < height / 2 + 0.1)
        )
    assert (on_ground | inside_any).all()
    assert inside_any.sum() > 100  # the boxes are seen


def test_the_depth_image_is_the_lidar_seen_from_each_camera():
    s = scene("val", 0, SMALL)
    for c, camera in enumerate(cameras(SMALL.image_size)):
        v, u = np.nonzero(s.depth[c, 0])
        assert len(u) > 100
        # the ray through each filled pixel, scaled to its depth, lands near a lidar point
        rays = camera.pixel_rays(*SMALL.image_size).reshape(*SMALL.image_size, 3)[v, u]
        points = camera.position + rays * s.depth[c, 0, v, u][:, None]
        sample = points[:: max(1, len(points) // 50)]
        nearest = np.min(np.linalg.norm(sample[:, None] - s.points[None, :, :3], axis=2), 1)
        # a pixel spans ~0.5% of its depth, so the point is off the pixel centre by that much
        assert np.all(nearest < 0.03 * s.depth[c, 0, v, u][:: max(1, len(points) // 50)] + 0.1)
