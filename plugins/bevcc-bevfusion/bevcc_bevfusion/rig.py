"""The sensor rig: a roof lidar and six cameras around the car (nuScenes' layout), in the lidar
frame (x forward, y left, z up; the ground is at z = -1.8 m)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GROUND_Z = -1.8
CAMERA_Z = -0.3  # cameras sit 1.5 m above the ground
CAMERA_YAWS_DEG = (0.0, -55.0, -110.0, 180.0, 110.0, 55.0)  # front, front-right, ... front-left
CAMERA_NAMES = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_BACK_RIGHT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_FRONT_LEFT",
)
HORIZONTAL_FOV_DEG = 70.0
LIDAR_ELEVATIONS_DEG = np.linspace(-30.0, 10.0, 32)  # a 32-beam lidar


@dataclass(frozen=True)
class Camera:
    name: str
    intrinsics: np.ndarray  # 3x3
    rotation: np.ndarray  # camera (x right, y down, z forward) -> lidar frame
    position: np.ndarray  # in the lidar frame

    def pixel_rays(self, height: int, width: int) -> np.ndarray:
        """Unit-depth ray directions of every pixel centre, in the lidar frame: [H*W, 3]."""
        v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
        fx, fy, cx, cy = (
            self.intrinsics[0, 0],
            self.intrinsics[1, 1],
            self.intrinsics[0, 2],
            self.intrinsics[1, 2],
        )
        cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1).reshape(-1, 3)
        return cam @ self.rotation.T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lidar-frame points [N, 3] -> (pixel uv [N, 2], depth [N])."""
        cam = (points - self.position) @ self.rotation
        depth = cam[:, 2]
        uv = cam @ self.intrinsics.T
        return uv[:, :2] / np.maximum(depth, 1e-6)[:, None], depth


def cameras(image_size: tuple[int, int]) -> list[Camera]:
    height, width = image_size
    focal = (width / 2) / math.tan(math.radians(HORIZONTAL_FOV_DEG) / 2)
    intrinsics = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    rig = []
    for name, yaw_deg in zip(CAMERA_NAMES, CAMERA_YAWS_DEG, strict=True):
        yaw = math.radians(yaw_deg)
        forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
        down = np.array([0.0, 0.0, -1.0])
        rotation = np.stack([right, down, forward], axis=1)
        rig.append(Camera(name, intrinsics, rotation, np.array([0.0, 0.0, CAMERA_Z])))
    return rig


def lidar_rays(azimuths: int) -> np.ndarray:
    """Unit ray directions of one lidar sweep: [32 * azimuths, 3]."""
    elevation = np.radians(LIDAR_ELEVATIONS_DEG)[:, None]
    azimuth = np.linspace(-math.pi, math.pi, azimuths, endpoint=False)[None, :]
    return np.stack(
        [
            np.cos(elevation) * np.cos(azimuth),
            np.cos(elevation) * np.sin(azimuth),
            np.sin(elevation) * np.ones_like(azimuth),
        ],
        -1,
    ).reshape(-1, 3)
