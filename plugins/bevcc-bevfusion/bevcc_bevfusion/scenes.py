"""Deterministic synthetic driving scenes: boxes of three classes on a ground plane, seen by the
lidar (points on their surfaces) and by six cameras (the same scene ray-cast into each image).
Scene `i` of a split is the same on every machine: everything draws from a seeded generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from bevcc_bevfusion import raycast
from bevcc_bevfusion.presets import CLASSES, Preset
from bevcc_bevfusion.rig import GROUND_Z, cameras, lidar_rays

# class -> (length, width, height) mean sizes in metres, base colour (RGB), lidar reflectivity
CLASS_SIZES = {"car": (4.5, 1.9, 1.6), "truck": (7.5, 2.6, 3.2), "pedestrian": (0.8, 0.8, 1.8)}
CLASS_COLOURS = {
    "car": (0.75, 0.2, 0.15),
    "truck": (0.2, 0.3, 0.75),
    "pedestrian": (0.3, 0.7, 0.25),
}
CLASS_REFLECTIVITY = {"car": 0.5, "truck": 0.7, "pedestrian": 0.3}
SPLIT_SEED_BASE = {"train": 0, "val": 1_000_000, "calib": 2_000_000}
IMAGE_MEAN, IMAGE_STD = 0.45, 0.25
LIGHT = np.array([0.4, 0.3, 0.85]) / np.linalg.norm([0.4, 0.3, 0.85])


@dataclass
class Scene:
    boxes: np.ndarray  # [K, 7] x, y, z (centre), l, w, h, yaw
    labels: np.ndarray  # [K] class index into CLASSES
    colours: np.ndarray  # [K, 3]
    points: np.ndarray  # [P, 5] x, y, z, intensity, time (0: one sweep)
    images: np.ndarray  # [6, 3, H, W] float32, normalised
    depth: np.ndarray  # [6, 1, H, W] float32: lidar depth projected into each camera, 0 = none


def scene(split: str, index: int, preset: Preset) -> Scene:
    rng = np.random.default_rng([SPLIT_SEED_BASE[split] + index, 7])
    boxes, labels, colours = _layout(rng, preset)
    points = _lidar(rng, boxes, labels, preset)
    images, depth = _cameras(rng, boxes, colours, points, preset)
    return Scene(boxes, labels, colours, points, images, depth)


def _layout(rng, preset: Preset):
    limit = preset.xbound[1] - 2.0
    count = int(rng.integers(preset.max_objects // 3, preset.max_objects + 1))
    boxes, labels, colours = [], [], []
    for _ in range(count * 20):  # rejection sampling: no overlaps, nothing on the ego car
        if len(boxes) == count:
            break
        label = int(rng.choice(len(CLASSES), p=(0.55, 0.2, 0.25)))
        name = CLASSES[label]
        size = np.array(CLASS_SIZES[name]) * rng.uniform(0.9, 1.1, 3)
        x, y = rng.uniform(-limit, limit, 2)
        radius = np.hypot(size[0], size[1]) / 2
        if abs(x) < 4 + radius and abs(y) < 3 + radius:
            continue
        if any(
            np.hypot(x - b[0], y - b[1]) < radius + np.hypot(b[3], b[4]) / 2 + 0.5 for b in boxes
        ):
            continue
        yaw = rng.uniform(-np.pi, np.pi)
        boxes.append([x, y, GROUND_Z + size[2] / 2, *size, yaw])
        labels.append(label)
        colours.append(
            np.clip(
                np.array(CLASS_COLOURS[name]) * rng.uniform(0.7, 1.3) + rng.normal(0, 0.05, 3), 0, 1
            )
        )
    return (
        np.array(boxes, dtype=np.float64).reshape(-1, 7),
        np.array(labels, dtype=np.int64),
        np.array(colours).reshape(-1, 3),
    )


def _lidar(rng, boxes, labels, preset: Preset) -> np.ndarray:
    rays = lidar_rays(preset.lidar_azimuths)
    distance, hit, _ = raycast.cast(np.zeros(3), rays, boxes, max_range=70.0)
    keep = np.isfinite(distance) & (rng.random(len(rays)) > 0.1)  # 10% dropout
    distance = distance[keep] + rng.normal(0, 0.02, keep.sum())
    xyz = rays[keep] * distance[:, None]
    reflectivity = np.full(len(xyz), 0.1)
    on_box = hit[keep] >= 0
    reflectivity[on_box] = [CLASS_REFLECTIVITY[CLASSES[labels[i]]] for i in hit[keep][on_box]]
    intensity = np.clip(reflectivity + rng.normal(0, 0.05, len(xyz)), 0, 1)
    return np.concatenate([xyz, intensity[:, None], np.zeros((len(xyz), 1))], 1).astype(np.float32)


def _cameras(rng, boxes, colours, points, preset: Preset):
    height, width = preset.image_size
    rig = cameras(preset.image_size)
    images = np.zeros((len(rig), 3, height, width), np.float32)
    depth = np.zeros((len(rig), 1, height, width), np.float32)
    for c, camera in enumerate(rig):
        rays = camera.pixel_rays(height, width)
        distance, hit, normal = raycast.cast(camera.position, rays, boxes, max_range=200.0)
        images[c] = _shade(rays, camera.position, distance, hit, normal, colours).T.reshape(
            3, height, width
        )
        uv, z = camera.project(points[:, :3])
        inside = (
            (z > 0.5) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
        )
        u, v = uv[inside, 0].astype(int), uv[inside, 1].astype(int)
        order = np.argsort(-z[inside])  # far first, so the nearest point wins each pixel
        depth[c, 0, v[order], u[order]] = z[inside][order]
    images += rng.normal(0, 0.02, images.shape).astype(np.float32)
    return (images - IMAGE_MEAN) / IMAGE_STD, depth


def _shade(rays, origin, distance, hit, normal, colours) -> np.ndarray:
    """RGB per ray: lit box faces, a checkered ground, a sky gradient."""
    unit = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    rgb = np.empty((len(rays), 3))
    sky = hit == raycast.NO_HIT
    rgb[sky] = np.array([0.55, 0.7, 0.9]) * (0.8 + 0.2 * unit[sky, 2:3])
    ground = hit == raycast.GROUND
    where = origin + rays[ground] * distance[ground, None]
    checker = (np.floor(where[:, 0] / 2) + np.floor(where[:, 1] / 2)) % 2
    rgb[ground] = (0.3 + 0.08 * checker)[:, None]
    box = hit >= 0
    light = 0.35 + 0.65 * np.clip(normal[box] @ LIGHT, 0, 1)
    rgb[box] = colours[hit[box]] * light[:, None]
    return rgb
