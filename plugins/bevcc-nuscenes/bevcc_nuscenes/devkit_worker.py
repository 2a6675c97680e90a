"""Runs nuscenes-devkit's DetectionEval on one request; imported in-process or run as a worker.

This file imports only the standard library and the devkit, because it runs in the devkit's own
interpreter (nuscenes-devkit pins numpy<2, bevcc's environment has numpy 2). As a script it
serves JSON lines: it answers `{"ready": devkit version}` once, then one answer per request line.
The NuScenes tables are loaded once per (version, dataroot) and kept, since a sensitivity run
evaluates many times against the same tables.

Request: {"dataroot", "version", "eval_set", "config": dict | null (detection_cvpr_2019),
          "results": {sample_token: [result box, ...]}, "sample_tokens": [scored samples]}
Answer:  {"metrics": DetectionMetrics.serialize()} or {"error": "one line"}
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile

_DATABASES: dict = {}
META = {
    "use_camera": False,
    "use_lidar": False,
    "use_radar": False,
    "use_map": False,
    "use_external": False,
}


def evaluate(request: dict) -> dict:
    """The devkit's metrics for the request's results, scored on its sample_tokens."""
    # the devkit prints and draws progress bars even with verbose=False; keep callers' streams
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return _evaluate(request)


def _evaluate(request: dict) -> dict:
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.data_classes import DetectionConfig
    from nuscenes.eval.detection.evaluate import DetectionEval

    nusc = _database(request["version"], request["dataroot"])
    config = (
        DetectionConfig.deserialize(request["config"])
        if request.get("config")
        else config_factory("detection_cvpr_2019")
    )
    eval_set = request["eval_set"]
    split = _split_sample_tokens(nusc, eval_set)
    scored = list(dict.fromkeys(request["sample_tokens"]))
    outside = [t for t in [*scored, *request["results"]] if t not in split]
    if outside:
        raise ValueError(
            f"sample {outside[0]} is not in split '{eval_set}' of {nusc.version} "
            f"at {nusc.dataroot}; score samples of that split, or set the split"
        )
    # DetectionEval wants every sample of the split in the file; a sample without results is a
    # sample with no detections, and only the scored samples are kept below
    results = {
        t: [{**box, "sample_token": t} for box in request["results"].get(t, [])]
        for t in sorted(split)
    }
    with tempfile.TemporaryDirectory(prefix="bevcc-nuscenes-") as tmp:
        path = os.path.join(tmp, "results.json")
        with open(path, "w") as f:
            json.dump({"meta": META, "results": results}, f)
        evaluation = DetectionEval(
            nusc, config=config, result_path=path, eval_set=eval_set, output_dir=tmp, verbose=False
        )
        if set(scored) != set(split):
            _keep_only(evaluation, scored)
        metrics, _ = evaluation.evaluate()
    return metrics.serialize()


def _database(version: str, dataroot: str):
    from nuscenes import NuScenes

    key = (version, os.path.realpath(dataroot))
    if key not in _DATABASES:
        _DATABASES[key] = NuScenes(version=version, dataroot=dataroot, verbose=False)
    return _DATABASES[key]


def _split_sample_tokens(nusc, eval_set: str) -> set[str]:
    from nuscenes.eval.common.loaders import get_samples_of_custom_split, get_samples_of_scenes
    from nuscenes.utils.splits import create_splits_scenes, is_predefined_split

    if is_predefined_split(split_name=eval_set):
        return set(get_samples_of_scenes(create_splits_scenes()[eval_set], nusc))
    return set(get_samples_of_custom_split(eval_set, nusc))


def _keep_only(evaluation, tokens: list[str]) -> None:
    """Restrict an initialised DetectionEval (boxes loaded and filtered) to `tokens`."""
    from nuscenes.eval.common.data_classes import EvalBoxes

    for attribute in ("gt_boxes", "pred_boxes"):
        kept = EvalBoxes()
        for token in tokens:
            kept.add_boxes(token, getattr(evaluation, attribute)[token])
        setattr(evaluation, attribute, kept)
    evaluation.sample_tokens = evaluation.gt_boxes.sample_tokens


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    """Answer JSON-line requests until stdin closes."""
    from importlib.metadata import version

    import nuscenes.eval.detection.evaluate  # noqa: F401  (fail before "ready", not per request)

    print(json.dumps({"ready": version("nuscenes-devkit")}), file=stdout, flush=True)
    for line in stdin:
        if not line.strip():
            continue
        try:
            answer = {"metrics": evaluate(json.loads(line))}
        except Exception as exc:  # noqa: BLE001  (every failure goes back as one line)
            answer = {"error": _one_line(exc)}
        print(json.dumps(answer), file=stdout, flush=True)


if __name__ == "__main__":
    serve()
