"""nuScenes detection mAP / NDS as a bevcc metric, scored by nuscenes-devkit's DetectionEval.

The model-specific part is the decoder: `decode(output, batch) -> {sample_token: [box, ...]}`,
called once per evaluation batch with that batch's output tuple and the batch dict; boxes are
in the format of `bevcc_nuscenes.boxes`. Every sample the decoder names is scored (a sample with
an empty list has no detections); the ground truth of the split's other samples is left out, so
the first `eval_batches` batches of a sensitivity run score against their own samples only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bevcc.errors import InputError, UsageError
from bevcc.loading import load_callable
from bevcc_nuscenes import devkit
from bevcc_nuscenes.boxes import DETECTION_NAMES, result_box

SCORES = {"nds": "nd_score", "map": "mean_ap"}
TABLES = ("sample", "sample_annotation", "scene", "ego_pose", "sample_data")


def nuscenes_metric(
    dataroot,
    decode,
    *,
    version: str = "v1.0-trainval",
    eval_set: str = "val",
    score: str = "nds",
    config=None,
    sample_tokens=None,
    python=None,
) -> Callable:
    """A metric fn(outputs, reference, batches) -> NDS or mAP (higher is better).

    decode: a callable or a "module:function" / "file.py:function" reference.
    config: None for the devkit's detection_cvpr_2019, or a DetectionConfig dict / JSON file.
    sample_tokens: score these samples (those the decoder does not name have no detections);
    default: the samples the decoder names.
    python: the devkit interpreter (default: $BEVCC_NUSCENES_PYTHON, this interpreter if it
    can import nuscenes, else .venv-nuscenes next to this environment).
    """
    if score not in SCORES:
        raise UsageError(
            f"nuscenes_metric: score must be one of {', '.join(SCORES)}, got {score!r}"
        )
    decoder = load_callable(decode, "nuScenes decoder") if isinstance(decode, str) else decode
    request = {
        "dataroot": str(check_dataroot(dataroot, version)),
        "version": version,
        "eval_set": eval_set,
        "config": load_config(config),
    }
    fixed = list(sample_tokens) if sample_tokens is not None else None

    def metric(outputs, reference, batches) -> float:
        results = decode_all(decoder, outputs, batches)
        tokens = fixed if fixed is not None else list(results)
        metrics = devkit.runner(python)({**request, "results": results, "sample_tokens": tokens})
        return float(metrics[SCORES[score]])

    metric.__name__ = f"nuscenes_{score}"
    return metric


def evaluate_results(
    results: dict,
    dataroot,
    *,
    version: str = "v1.0-trainval",
    eval_set: str = "val",
    config=None,
    sample_tokens=None,
    python=None,
) -> dict:
    """The devkit's full metrics (DetectionMetrics.serialize()) for {sample_token: [box, ...]}."""
    checked = {
        token: [result_box(b, f"sample {token}, box {i}") for i, b in enumerate(boxes)]
        for token, boxes in results.items()
    }
    tokens = list(sample_tokens) if sample_tokens is not None else list(checked)
    request = {
        "dataroot": str(check_dataroot(dataroot, version)),
        "version": version,
        "eval_set": eval_set,
        "config": load_config(config),
        "results": checked,
        "sample_tokens": tokens,
    }
    return devkit.runner(python)(request)


def decode_all(decoder: Callable, outputs, batches) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {}
    for index, (output, batch) in enumerate(zip(outputs, batches, strict=True)):
        decoded = decoder(output, batch)
        if not isinstance(decoded, dict):
            raise InputError(
                f"nuScenes decoder: batch {index}: return {{sample_token: [box, "
                f"...]}}, got {type(decoded).__name__}"
            )
        for token, boxes in decoded.items():
            where = f"batch {index}, sample {token}"
            if token in results:
                raise InputError(f"nuScenes decoder: {where}: sample decoded twice")
            results[str(token)] = [result_box(b, f"{where}, box {i}") for i, b in enumerate(boxes)]
    return results


def check_dataroot(dataroot, version: str) -> Path:
    """The dataroot if it holds the version's tables, else one clear error."""
    root = Path(dataroot)
    missing = [t for t in TABLES if not (root / version / f"{t}.json").is_file()]
    if missing:
        raise InputError(
            f"nuScenes dataroot {root}: no {version}/{missing[0]}.json; point it at "
            f"the folder holding {version}/ (or set the version)"
        )
    return root.resolve()


def load_config(config) -> dict | None:
    """None (the devkit's detection_cvpr_2019), or a DetectionConfig dict from a dict or file."""
    if config is None:
        return None
    if isinstance(config, (str, Path)):
        try:
            config = json.loads(Path(config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(
                f"nuScenes eval config {config}: {exc}; give a DetectionConfig JSON file"
            ) from None
    keys = (
        "class_range",
        "dist_fcn",
        "dist_ths",
        "dist_th_tp",
        "min_recall",
        "min_precision",
        "max_boxes_per_sample",
        "mean_ap_weight",
    )
    missing = [k for k in keys if k not in config]
    if missing:
        raise InputError(
            f"nuScenes eval config lacks {', '.join(missing)} (see the devkit's "
            "detection_cvpr_2019.json)"
        )
    if set(config["class_range"]) != set(DETECTION_NAMES):
        raise InputError(
            "nuScenes eval config: class_range must name exactly the 10 detection "
            f"classes ({', '.join(DETECTION_NAMES)})"
        )
    return dict(config)
