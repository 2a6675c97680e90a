"""A tiny hand-made nuScenes dataroot: real v1.0-mini style tables, small enough to reason about.

Three scenes of three key frames (0.5 s apart): scene-0103 and scene-0916 form the devkit's
`mini_val` split, scene-0061 belongs to `mini_train`. Each scene holds two instances of each of
the 10 detection classes, at least 15 m apart within a class and within 25 m of the ego vehicle,
moving at constant velocities (traffic cones and barriers stand still), so the devkit's velocity
estimate is that velocity. Two more instances per scene are ground truth DetectionEval must
drop: a car 60 m away (beyond its 50 m class range) and a pedestrian without lidar or radar
points.

`python -m bevcc_nuscenes.tiny_dataroot DIR` writes one.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

VERSION = "v1.0-mini"
SCENES = (("scene-0103", "mini_val"), ("scene-0916", "mini_val"), ("scene-0061", "mini_train"))
FRAMES = 3
FRAME_US = 500_000
EGO_STEP = 2.0  # m per frame, along x
# class: (category, size w/l/h, attribute when moving, attribute when standing, speed m/s)
CLASSES = {
    "car": ("vehicle.car", (1.75, 4.5, 1.5), "vehicle.moving", "vehicle.parked", 4.0),
    "truck": ("vehicle.truck", (2.5, 7.0, 3.0), "vehicle.moving", "vehicle.stopped", 3.0),
    "bus": ("vehicle.bus.rigid", (3.0, 11.0, 3.5), "vehicle.moving", "vehicle.stopped", 2.0),
    "trailer": ("vehicle.trailer", (2.5, 10.0, 3.75), "vehicle.moving", "vehicle.parked", 1.0),
    "construction_vehicle": (
        "vehicle.construction",
        (3.0, 6.5, 3.25),
        "vehicle.moving",
        "vehicle.parked",
        0.5,
    ),
    "pedestrian": (
        "human.pedestrian.adult",
        (0.75, 0.75, 1.75),
        "pedestrian.moving",
        "pedestrian.standing",
        1.5,
    ),
    "motorcycle": (
        "vehicle.motorcycle",
        (0.75, 2.0, 1.5),
        "cycle.with_rider",
        "cycle.without_rider",
        5.0,
    ),
    "bicycle": (
        "vehicle.bicycle",
        (0.5, 1.75, 1.25),
        "cycle.with_rider",
        "cycle.without_rider",
        2.5,
    ),
    "traffic_cone": ("movable_object.trafficcone", (0.5, 0.5, 1.0), "", "", 0.0),
    "barrier": ("movable_object.barrier", (2.5, 0.5, 1.0), "", "", 0.0),
}
# detection_cvpr_2019's class ranges (m from the ego vehicle): GT beyond them is dropped
CLASS_RANGE = {
    "car": 50,
    "truck": 50,
    "bus": 50,
    "trailer": 50,
    "construction_vehicle": 50,
    "pedestrian": 40,
    "motorcycle": 40,
    "bicycle": 40,
    "traffic_cone": 30,
    "barrier": 30,
}
ATTRIBUTES = (
    "pedestrian.moving",
    "pedestrian.sitting_lying_down",
    "pedestrian.standing",
    "cycle.with_rider",
    "cycle.without_rider",
    "vehicle.moving",
    "vehicle.parked",
    "vehicle.stopped",
)


@dataclass
class TinyDataroot:
    """What was written: the folder, its version, sample tokens per split and per scene, and the
    ground truth as result boxes (score 1.0), split into what DetectionEval keeps and drops."""

    root: Path | None
    version: str = VERSION
    splits: dict[str, list[str]] = field(default_factory=dict)
    scenes: dict[str, list[str]] = field(default_factory=dict)
    ego: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    kept: dict[str, list[dict]] = field(default_factory=dict)
    dropped: dict[str, list[dict]] = field(default_factory=dict)


def token(*parts) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def quaternion(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def tiny_tables() -> tuple[dict[str, list[dict]], TinyDataroot]:
    """The tables and the truth, without writing anything (the truth's root is unset)."""
    tables = {
        name: []
        for name in (
            "category",
            "attribute",
            "visibility",
            "instance",
            "sensor",
            "calibrated_sensor",
            "ego_pose",
            "log",
            "scene",
            "sample",
            "sample_data",
            "sample_annotation",
            "map",
        )
    }
    info = TinyDataroot(None)
    _static_tables(tables)
    for s, (name, split) in enumerate(SCENES):
        samples = _scene(tables, info, s, name)
        info.splits.setdefault(split, []).extend(samples)
        info.scenes[name] = samples
    tables["map"].append(
        {
            "token": token("map"),
            "category": "semantic_prior",
            "filename": "maps/tiny.png",
            "log_tokens": [r["token"] for r in tables["log"]],
        }
    )
    return tables, info


def write_tiny_dataroot(root: str | Path) -> TinyDataroot:
    """Write the tables (and the map mask file NuScenes opens) under `root`; return the truth."""
    tables, info = tiny_tables()
    info.root = Path(root)
    (info.root / VERSION).mkdir(parents=True, exist_ok=True)
    for name, records in tables.items():
        (info.root / VERSION / f"{name}.json").write_text(json.dumps(records, indent=0))
    (info.root / "maps").mkdir(exist_ok=True)
    (info.root / "maps" / "tiny.png").write_bytes(_png_1x1())
    return info


def _static_tables(tables: dict) -> None:
    for detection_name, (category, *_rest) in CLASSES.items():
        tables["category"].append(
            {
                "token": token("category", category),
                "name": category,
                "description": f"{detection_name} in the tiny dataroot",
            }
        )
    tables["attribute"] = [
        {"token": token("attribute", a), "name": a, "description": a} for a in ATTRIBUTES
    ]
    tables["visibility"] = [
        {"token": str(i), "level": level, "description": level}
        for i, level in enumerate(("v0-40", "v40-60", "v60-80", "v80-100"), 1)
    ]
    tables["sensor"] = [{"token": token("sensor"), "channel": "LIDAR_TOP", "modality": "lidar"}]


def _scene(tables: dict, info: TinyDataroot, s: int, name: str) -> list[str]:
    log, scene = token("log", s), token("scene", s)
    calibrated = token("calibrated_sensor", s)
    tables["log"].append(
        {
            "token": log,
            "logfile": f"tiny-{s}",
            "vehicle": "tiny",
            "date_captured": "2018-07-24",
            "location": "singapore-onenorth",
        }
    )
    tables["calibrated_sensor"].append(
        {
            "token": calibrated,
            "sensor_token": token("sensor"),
            "translation": [0.75, 0.0, 1.75],
            "rotation": [1.0, 0.0, 0.0, 0.0],
            "camera_intrinsic": [],
        }
    )
    samples = [token("sample", s, k) for k in range(FRAMES)]
    start = 1_532_402_927_000_000 + s * 100_000_000
    for k, sample in enumerate(samples):
        stamp = start + k * FRAME_US
        ego = (100.0 * s + EGO_STEP * k, 50.0, 0.0)
        info.ego[sample] = ego
        pose, data = token("ego_pose", s, k), token("sample_data", s, k)
        tables["ego_pose"].append(
            {
                "token": pose,
                "timestamp": stamp,
                "translation": list(ego),
                "rotation": [1.0, 0.0, 0.0, 0.0],
            }
        )
        tables["sample"].append(
            {
                "token": sample,
                "timestamp": stamp,
                "scene_token": scene,
                "prev": samples[k - 1] if k else "",
                "next": samples[k + 1] if k + 1 < FRAMES else "",
            }
        )
        tables["sample_data"].append(
            {
                "token": data,
                "sample_token": sample,
                "ego_pose_token": pose,
                "calibrated_sensor_token": calibrated,
                "timestamp": stamp,
                "fileformat": "pcd",
                "is_key_frame": True,
                "height": 0,
                "width": 0,
                "filename": f"samples/LIDAR_TOP/tiny-{s}-{k}.pcd.bin",
                "prev": token("sample_data", s, k - 1) if k else "",
                "next": token("sample_data", s, k + 1) if k + 1 < FRAMES else "",
            }
        )
        info.kept[sample], info.dropped[sample] = [], []
    tables["scene"].append(
        {
            "token": scene,
            "log_token": log,
            "nbr_samples": FRAMES,
            "first_sample_token": samples[0],
            "last_sample_token": samples[-1],
            "name": name,
            "description": "tiny hand-made scene",
        }
    )
    for j, (detection_name, spec) in enumerate(CLASSES.items()):
        for n in range(2):
            offset = (-20.0 + 4.0 * j, -16.0 + 17.0 * n + s)  # classes 4 m apart, pairs 17 m
            _instance(
                tables,
                info,
                (s, detection_name, n),
                detection_name,
                spec,
                samples,
                offset,
                points=10,
            )
    _instance(tables, info, (s, "far"), "car", CLASSES["car"], samples, (60.0, 0.0), points=10)
    _instance(
        tables,
        info,
        (s, "empty"),
        "pedestrian",
        CLASSES["pedestrian"],
        samples,
        (5.0, 5.0),
        points=0,
    )
    return samples


def _instance(tables, info, key, detection_name, spec, samples, offset, points) -> None:
    category, size, moving, standing, speed = spec
    s = key[0]
    # both instances of a class head the same way, so they stay 17 m apart while moving
    yaw = 0.25 * list(CLASSES).index(detection_name) - 1.0
    velocity = (speed * math.cos(yaw), speed * math.sin(yaw)) if speed else (0.0, 0.0)
    attribute = moving if speed else standing
    annotations = [token("sample_annotation", *key, k) for k in range(len(samples))]
    tables["instance"].append(
        {
            "token": token("instance", *key),
            "category_token": token("category", category),
            "nbr_annotations": len(samples),
            "first_annotation_token": annotations[0],
            "last_annotation_token": annotations[-1],
        }
    )
    for k, sample in enumerate(samples):
        t = k * FRAME_US * 1e-6
        centre = [
            100.0 * s + offset[0] + velocity[0] * t,
            50.0 + offset[1] + velocity[1] * t,
            size[2] / 2,
        ]
        tables["sample_annotation"].append(
            {
                "token": annotations[k],
                "sample_token": sample,
                "instance_token": token("instance", *key),
                "visibility_token": "4",
                "attribute_tokens": [token("attribute", attribute)] if attribute else [],
                "translation": centre,
                "size": list(size),
                "rotation": quaternion(yaw),
                "prev": annotations[k - 1] if k else "",
                "next": annotations[k + 1] if k + 1 < len(samples) else "",
                "num_lidar_pts": points,
                "num_radar_pts": 0,
            }
        )
        box = {
            "translation": centre,
            "size": list(size),
            "rotation": quaternion(yaw),
            "velocity": list(velocity),
            "detection_name": detection_name,
            "detection_score": 1.0,
            "attribute_name": attribute,
        }
        far = math.dist(centre[:2], info.ego[sample][:2]) >= CLASS_RANGE[detection_name]
        (info.dropped if far or points == 0 else info.kept)[sample].append(box)


def _png_1x1() -> bytes:
    """A 1x1 black 8-bit grey PNG: NuScenes checks the map mask file exists."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\0"))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    written = write_tiny_dataroot(sys.argv[1])
    print(
        f"wrote {written.root / written.version}: "
        + ", ".join(f"{k} {len(v)} samples" for k, v in written.splits.items())
    )
