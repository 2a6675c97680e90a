"""Result boxes in the nuScenes detection format, checked here so a bad box is one clear line.

A box is a dict in global coordinates: translation (x, y, z) m, size (w, l, h) m, rotation
quaternion (w, x, y, z), velocity (vx, vy) m/s, detection_name, detection_score and, optional,
attribute_name. Numbers may be Python, NumPy or torch scalars.
"""

from __future__ import annotations

import math

from bevcc.errors import InputError

# the nuScenes detection task's classes and attributes
DETECTION_NAMES = (
    "car",
    "truck",
    "bus",
    "trailer",
    "construction_vehicle",
    "pedestrian",
    "motorcycle",
    "bicycle",
    "traffic_cone",
    "barrier",
)
ATTRIBUTE_NAMES = (
    "pedestrian.moving",
    "pedestrian.sitting_lying_down",
    "pedestrian.standing",
    "cycle.with_rider",
    "cycle.without_rider",
    "vehicle.moving",
    "vehicle.parked",
    "vehicle.stopped",
)
VECTORS = {"translation": 3, "size": 3, "rotation": 4, "velocity": 2}


def result_box(box, where: str) -> dict:
    """`box` as a JSON-ready result dict; `where` names it in errors (e.g. "batch 3, sample X")."""
    if not isinstance(box, dict):
        raise InputError(
            f"nuScenes decoder: {where}: a box must be a dict, got {type(box).__name__}"
        )
    missing = [k for k in (*VECTORS, "detection_name", "detection_score") if k not in box]
    if missing:
        raise InputError(f"nuScenes decoder: {where}: box lacks {', '.join(missing)}")
    out = {}
    for key, length in VECTORS.items():
        values = [_number(v, key, where) for v in box[key]]
        if len(values) != length:
            raise InputError(
                f"nuScenes decoder: {where}: {key} needs {length} numbers, got {len(values)}"
            )
        out[key] = values
    if min(out["size"]) <= 0:
        raise InputError(f"nuScenes decoder: {where}: size {out['size']} must be positive")
    out["detection_name"] = _name(box["detection_name"], DETECTION_NAMES, "detection_name", where)
    out["detection_score"] = _number(box["detection_score"], "detection_score", where)
    attribute = box.get("attribute_name", "")
    out["attribute_name"] = _name(attribute, ("", *ATTRIBUTE_NAMES), "attribute_name", where)
    return out


def _number(value, key: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(
            f"nuScenes decoder: {where}: {key} holds {value!r}, not a number"
        ) from None
    # NaN is the devkit's "not estimated" velocity; anything else must be finite
    if math.isinf(number) or (math.isnan(number) and key != "velocity"):
        raise InputError(f"nuScenes decoder: {where}: {key} holds {number}")
    return number


def _name(value, allowed: tuple[str, ...], key: str, where: str) -> str:
    if value not in allowed:
        raise InputError(
            f"nuScenes decoder: {where}: {key} {value!r} is none of "
            f"{', '.join(a for a in allowed if a)}"
        )
    return value
