"""Ray casting against a ground plane and yaw-rotated boxes: one routine renders the camera images
and the lidar sweep, so both sensors see exactly the same scene."""

from __future__ import annotations

import numpy as np
from bevcc_bevfusion.rig import GROUND_Z

NO_HIT = -2
GROUND = -1
_CHUNK = 65536  # rays per step: keeps the rays x boxes arrays to a few MB


def cast(
    origin: np.ndarray, directions: np.ndarray, boxes: np.ndarray, max_range: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First hit of each ray. boxes: [K, 7] (x, y, z, l, w, h, yaw), z the box centre.

    Returns (distance along the ray [M], hit index [M]: box index, GROUND or NO_HIT,
    surface normal [M, 3]).
    """
    parts = [
        _cast_chunk(origin, directions[i : i + _CHUNK], boxes, max_range)
        for i in range(0, len(directions), _CHUNK)
    ]
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def _cast_chunk(origin, directions, boxes, max_range):
    count = len(directions)
    distance = np.full(count, np.inf)
    hit = np.full(count, NO_HIT)
    normal = np.zeros((count, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = (GROUND_Z - origin[2]) / directions[:, 2]
    ground = (directions[:, 2] < 0) & (t_ground < max_range)
    distance[ground], hit[ground] = t_ground[ground], GROUND
    normal[ground] = (0.0, 0.0, 1.0)
    if len(boxes):
        t_box, axis, sign = _slabs(origin, directions, boxes)  # each [M, K]
        nearest = np.argmin(t_box, axis=1)
        rows = np.arange(count)
        t_near = t_box[rows, nearest]
        closer = t_near < np.minimum(distance, max_range)
        distance[closer], hit[closer] = t_near[closer], nearest[closer]
        local = np.zeros((count, 3))
        local[rows, axis[rows, nearest]] = sign[rows, nearest]
        yaw = boxes[nearest, 6]
        world = np.stack(
            [
                np.cos(yaw) * local[:, 0] - np.sin(yaw) * local[:, 1],
                np.sin(yaw) * local[:, 0] + np.cos(yaw) * local[:, 1],
                local[:, 2],
            ],
            1,
        )
        normal[closer] = world[closer]
    distance[hit == NO_HIT] = np.inf
    return distance, hit, normal


def _slabs(origin, directions, boxes):
    """Entry distance of every ray into every box (inf when missed), with the entry face."""
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    rel = origin[None, :] - boxes[:, :3]  # [K, 3]
    # rotate into each box frame (by -yaw)
    o = np.stack(
        [cos * rel[:, 0] + sin * rel[:, 1], -sin * rel[:, 0] + cos * rel[:, 1], rel[:, 2]], -1
    )  # [K, 3]
    dx, dy, dz = directions[:, 0:1], directions[:, 1:2], directions[:, 2:3]
    d = np.stack(
        [
            cos * dx + sin * dy,
            -sin * dx + cos * dy,
            np.broadcast_to(dz, (len(directions), len(boxes))),
        ],
        -1,
    )  # [M, K, 3]
    half = boxes[:, 3:6] / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    t_low, t_high = np.minimum(t1, t2), np.maximum(t1, t2)
    t_low = np.nan_to_num(t_low, nan=-np.inf)
    t_high = np.nan_to_num(t_high, nan=np.inf)
    axis = np.argmax(t_low, axis=2)
    t_enter = np.max(t_low, axis=2)
    t_exit = np.min(t_high, axis=2)
    entered = (t_enter <= t_exit) & (t_enter > 1e-6)
    d_axis = np.take_along_axis(d, axis[..., None], 2)[..., 0]
    return np.where(entered, t_enter, np.inf), axis, -np.sign(d_axis)
