"""The accuracy table: float vs PTQ INT8 (all layers) vs PTQ + sensitivity_disable vs QAT, on the
synthetic validation split, with the pipelines `bevfusion.toml` ships (their fx part), plus the
deployed files: the main job's INT8 and FP16 sets run as the deployment chains them.

    python -m bevcc_bevfusion.accuracy [--scenes 300] [--json FILE] [--device auto] [--jobs N]

INT8 rows run bevcc's fake-quant PyTorch modules in place of the float subnets. QAT fine-tunes
the PTQ + disable model briefly (camera and fuser quantized; on the CPU the lidar backbone stays
frozen, since spconv's backward is CUDA-only; on a CUDA device it fine-tunes too). The
"deployed files" column compiles the set with `bevfusion.toml` into a temporary directory and
evaluates it (`bevcc evaluate`), then does the same for that set with every sensitivity_disable
step dropped (the all-INT8 files); the command fails when any files and their PyTorch model
differ by more than the stated tolerance.

`--device` (default auto: cuda where torch sees a GPU) is where the compiles calibrate and run
their passes (`bevcc.compile(device=...)`) and where the PyTorch rows and the QAT fine-tune run;
the deployed files run on onnxruntime's CPU provider and bevcc's libspconv interpreter, beside
their PyTorch references on the CPU, whatever the device. `--jobs` processes generate missing
scenes, `--eval-jobs` processes share the deployed files' scenes (the files run on the CPU,
where one process uses few cores) and `--threads` sets the CPU threads torch uses. Each stage's wall time is printed and
written to the JSON.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import tomllib
import torch
from bevcc_bevfusion.dataset import VAL_SCENES, add_jobs_argument, load_split
from bevcc_bevfusion.deploy import small
from bevcc_bevfusion.deployed import evaluate as evaluate_files
from bevcc_bevfusion.evaluate import bev_map
from bevcc_bevfusion.lidar import voxelize
from bevcc_bevfusion.model import SUBNETS, BEVFusion, scene_inputs
from bevcc_bevfusion.targets import head_loss

import bevcc
from bevcc.config import CompileConfig, load_config
from bevcc.deploy.evaluation import Evaluation
from bevcc.device import resolve_device
from bevcc.pm.pipeline import IRGroup, Pipeline, parse_pipeline

CONFIG = Path(__file__).parent / "bevfusion.toml"
GOAL_RELATIVE_DROP = 0.005


def fx_pipelines(with_sensitivity: bool) -> dict[str, str]:
    """file name -> the fx passes its config pipeline runs (the part before export)."""
    files = tomllib.loads(CONFIG.read_text())["files"]
    result = {}
    for entry in files:
        group = next(
            e
            for e in parse_pipeline(entry["pipeline"]).elements
            if isinstance(e, IRGroup) and e.ir == "fx"
        )
        steps = [s for s in group.steps if with_sensitivity or s.name != "sensitivity_disable"]
        result[entry["name"]] = IRGroup("fx", steps).text()
    return result


def quantized(pipelines: dict[str, str], log, device: str = "cpu") -> BEVFusion:
    """The float model with each subnet replaced by what its fx pipeline makes of it, its passes
    run on `device` (the model comes back on the CPU)."""
    model = copy.deepcopy(small.model)
    for attribute, file in SUBNETS.items():
        start = time.time()
        builder = getattr(small, attribute)
        calib = getattr(small, f"{attribute}_calib")()
        result = bevcc.compile(
            builder(), pipeline=pipelines[file], calib=calib, stream=log, device=device
        )
        setattr(model, attribute, result.ir.module)
        print(f"  {file}: {pipelines[file]} ({time.time() - start:.1f} s)", file=log, flush=True)
    return model.eval()


def fine_tune(
    model: BEVFusion, scenes, lr: float = 2e-4, seed: int = 0, device: str = "cpu"
) -> BEVFusion:
    """QAT: a short fine-tune of every trainable subnet through the fake quantizers, on
    `device` (the model comes back on the CPU)."""
    torch.manual_seed(seed)
    model = copy.deepcopy(model).to(device)
    trainable = ("camera_backbone", "camera_vtransform", "fuser", "head")
    if device != "cpu":  # spconv's backward is CUDA-only: the lidar backbone trains there
        trainable += ("lidar_backbone",)
    params = [
        p for name in trainable for p in getattr(model, name).parameters() if p.is_floating_point()
    ]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = len(scenes)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
    )
    order = list(range(len(scenes)))
    random.Random(seed).shuffle(order)
    lidar = {}  # on the CPU, the frozen lidar backbone's output per scene, computed once
    for name in trainable:
        getattr(model, name).train()
    for i in order:
        s = scenes[i]
        images, depth, points = (t.to(device) for t in scene_inputs(s))
        if "lidar_backbone" in trainable:
            lidar_bev = model.lidar_backbone(*voxelize(points, model.preset))
        else:
            if i not in lidar:
                with torch.no_grad():
                    lidar[i] = model.lidar_backbone(*voxelize(points, model.preset))
            lidar_bev = lidar[i]
        camera = model.camera_vtransform(model.bev_pool(*model.camera_backbone(images, depth)))
        loss = head_loss(
            model.head(model.fuser(camera, lidar_bev)), s.boxes, s.labels, model.preset
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        schedule.step()
    return model.eval().to("cpu")


class Stages:
    """Each stage's wall time, printed as it starts and ends."""

    def __init__(self, log):
        self.log, self.seconds, self.began = log, {}, time.perf_counter()
        self.name, self.start = None, None

    def __call__(self, name: str) -> None:
        self.end()
        self.name, self.start = name, time.perf_counter()
        print(name, file=self.log, flush=True)

    def end(self) -> None:
        if self.name is not None:
            self.seconds[self.name] = round(time.perf_counter() - self.start, 1)
            print(f"  ({self.seconds[self.name]:.0f} s)", file=self.log, flush=True)
        self.name = None

    def total(self) -> float:
        return round(time.perf_counter() - self.began, 1)


def measure(
    scenes: int,
    qat_scenes: int,
    log=sys.stderr,
    device: str = "cpu",
    jobs: int = 1,
    eval_jobs: int = 1,
) -> dict:
    stage = Stages(log)
    stage(f"scenes: {scenes} validation, {qat_scenes} training ({jobs} processes)")
    val = load_split("val", scenes, small.preset, jobs)
    train = load_split("train", qat_scenes, small.preset, jobs)

    def run(model):
        model = model.to(device)
        try:
            return bev_map(
                lambda s: tuple(o.cpu() for o in model(*(t.to(device) for t in scene_inputs(s)))),
                val,
                small.preset,
            )
        finally:
            model.to("cpu")

    rows = {}
    stage("float")
    rows["float"] = run(small.model)
    stage("PTQ INT8, all layers")
    rows["ptq_int8"] = run(quantized(fx_pipelines(with_sensitivity=False), log, device))
    stage("PTQ INT8 + sensitivity_disable")
    ptq_disable = quantized(fx_pipelines(with_sensitivity=True), log, device)
    rows["ptq_disable"] = run(ptq_disable)
    stage(f"QAT: fine-tune on {qat_scenes} training scenes")
    qat = fine_tune(ptq_disable, train, device=device)
    rows["qat"] = run(qat)
    stage("deployed files: the main job's set (INT8 + FP16), chained as deployed")
    shipped = deployed_files(load_config(CONFIG), scenes, log, device, eval_jobs)
    stage("deployed files: the same set with every layer INT8 (no sensitivity_disable)")
    all_int8 = deployed_files(
        without_sensitivity(load_config(CONFIG)), scenes, log, device, eval_jobs
    )
    stage.end()
    evaluation = shipped.merged(all_int8)
    files = {
        "float": shipped.rows[0].files,
        "ptq_int8": all_int8.rows[0].files,
        "ptq_disable": shipped.rows[1].files,
    }
    return {
        "scenes": scenes,
        "qat_scenes": qat_scenes,
        "device": device,
        "seconds": {**stage.seconds, "total": stage.total()},
        "rows": rows,
        "files": files,
        "evaluation": evaluation.to_json(),
        "failures": evaluation.failures(),
        "evaluation_markdown": evaluation.markdown(),
    }


def without_sensitivity(config: CompileConfig) -> CompileConfig:
    """The set config with every sensitivity_disable step dropped and no FP16 set: the
    all-layers INT8 files."""
    files = []
    for spec in config.files:
        elements = []
        for element in parse_pipeline(spec.pipeline).elements:
            if isinstance(element, IRGroup):
                element = IRGroup(
                    element.ir, [s for s in element.steps if s.name != "sensitivity_disable"]
                )
            elements.append(element)
        files.append(dataclasses.replace(spec, pipeline=Pipeline(elements).text()))
    return dataclasses.replace(config, files=files, fp16_set=False)


def deployed_files(
    config: CompileConfig, scenes: int, log, device: str = "cpu", eval_jobs: int = 1
) -> Evaluation:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bevfusion"
        bevcc.compile_set(config, output=out, stream=io.StringIO(), device=device)
        return evaluate_files(out, config, scenes, log, device=device, jobs=eval_jobs)


LABELS = {
    "float": "float (PyTorch)",
    "ptq_int8": "PTQ INT8, all layers",
    "ptq_disable": "PTQ INT8 + sensitivity_disable",
    "qat": "QAT (short fine-tune)",
}


FILE_LABELS = {"float": "FP16 set", "ptq_int8": "all-INT8 set", "ptq_disable": "INT8 set"}


def table(result: dict) -> str:
    base = result["rows"]["float"]["mAP"]
    lines = [
        (
            "| model | BEV mAP (PyTorch) | relative to float | deployed files | car | truck | "
            "pedestrian |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for key, row in result["rows"].items():
        per = row["per_class"]
        files = result.get("files", {}).get(key)
        shipped = f"{files:.4f} ({FILE_LABELS[key]})" if files is not None else "-"
        lines.append(
            f"| {LABELS[key]} | {row['mAP']:.4f} | {row['mAP'] / base - 1:+.2%} | "
            f"{shipped} | {per['car']:.4f} | {per['truck']:.4f} | "
            f"{per['pedestrian']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=VAL_SCENES)
    parser.add_argument("--qat-scenes", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--device",
        default="auto",
        help="where compiles calibrate and the PyTorch rows and QAT run: cpu, cuda, cuda:N or "
        "auto (default: cuda where torch sees a GPU); the deployed files run on the CPU",
    )
    add_jobs_argument(parser)
    parser.add_argument(
        "--eval-jobs",
        type=int,
        default=1,
        help="processes the deployed files' evaluation splits the scenes among (default 1; "
        "each rebuilds the PyTorch references once, then takes every N-th scene)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (default: its own, one per core; onnxruntime takes one "
        "per core)",
    )
    args = parser.parse_args(argv)
    from bevcc.device import DeviceError

    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        parser.exit(2, f"bevcc_bevfusion.accuracy: {exc}\n")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(
        args.scenes, args.qat_scenes, device=device, jobs=args.jobs, eval_jobs=args.eval_jobs
    )
    sys.stdout.write(table(result) + "\n" + result["evaluation_markdown"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    drop = 1 - result["rows"]["ptq_disable"]["mAP"] / result["rows"]["float"]["mAP"]
    print(
        f"PTQ + disable vs float: {drop:.2%} relative drop (goal <= {GOAL_RELATIVE_DROP:.1%})",
        file=sys.stderr,
    )
    print(
        f"wall time {result['seconds']['total']:.0f} s on {device}: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items() if k != "total"),
        file=sys.stderr,
    )
    for failure in result["failures"]:
        print(f"deployed files: {failure}", file=sys.stderr)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
