"""Train the small reference on synthetic scenes and write the weights the plugin ships.

    python -m bevcc_bevfusion.train [--scenes 400] [--epochs 12] [--device auto] [--jobs N]

On a CUDA device everything trains end to end, the sparse lidar backbone included (spconv's
backward is CUDA-only); its BatchNorm statistics are then re-estimated as a plain average over
training scenes (INT8 calibration reads the ranges these statistics set), and its weights decay a
little more than the rest (`--lidar-weight-decay`: smaller weights, fewer outliers to quantize).
On the CPU the lidar backbone stays at its seeded initialisation with BatchNorm statistics
estimated on the training scenes, and everything else (camera backbone, FPN, depth net,
vtransform, fuser, decoder, head) trains end to end. The log goes to stderr and to train.log
next to the weights; until the last epoch ends, the latest epoch's weights sit beside them as
NAME.epochK.pt (a run cut short by a time limit keeps them).

The shipped weights (weights/bevfusion_small.pt, its train.log beside it) were trained with
`--device cuda` on one H200: 400 scenes x 12 epochs, lidar included, 415 s.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from pathlib import Path

import torch
from bevcc_bevfusion.dataset import add_jobs_argument, load_split
from bevcc_bevfusion.evaluate import bev_map
from bevcc_bevfusion.lidar import voxelize
from bevcc_bevfusion.model import BEVFusion, scene_inputs
from bevcc_bevfusion.presets import SMALL
from bevcc_bevfusion.targets import head_loss

from bevcc.device import resolve_device

WEIGHTS = Path(__file__).parent / "weights" / "bevfusion_small.pt"
VAL_EVERY_EPOCH = 40  # validation scenes scored after each epoch
BN_SCENES = 100  # training scenes the lidar's BatchNorm statistics are averaged over
WEIGHT_DECAY = 1e-4
LIDAR_WEIGHT_DECAY = 1e-2  # CUDA only (the lidar trains there)


@torch.no_grad()
def estimate_lidar_batchnorm(model: BEVFusion, voxels) -> None:
    """Each lidar BatchNorm's running statistics: a plain average over `voxels` (per scene:
    features, coordinates), in place of the momentum average training leaves."""
    model.lidar_backbone.train()
    for module in model.lidar_backbone.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the scenes
    for features, coords in voxels:
        model.lidar_backbone(features, coords)
    model.lidar_backbone.eval()
    for module in model.lidar_backbone.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.momentum = 0.01  # the encoder's own, should anyone train it further


def camera_bev(model: BEVFusion, images, depth):
    return model.camera_vtransform(model.bev_pool(*model.camera_backbone(images, depth)))


class Log:
    """Lines to stderr (or `stream`) and to a file, flushed as written."""

    def __init__(self, stream, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream, self.file = stream, path.open("w")

    def __call__(self, line: str) -> None:
        for target in (self.stream, self.file):
            print(line, file=target, flush=True)

    def close(self) -> None:
        self.file.close()


def train(
    scenes: int,
    epochs: int,
    seed: int,
    out: Path,
    log=sys.stderr,
    device: str = "cpu",
    jobs: int = 1,
    lidar_weight_decay: float = LIDAR_WEIGHT_DECAY,
) -> dict:
    """Train, write the half-precision weights to `out` (train.log beside them) and return the
    last validation score. `device` is resolved here (auto: cuda where there is one)."""
    device = resolve_device(device)
    write = Log(log, out.parent / "train.log")
    try:
        return _train(scenes, epochs, seed, out, write, device, jobs, lidar_weight_decay)
    finally:
        write.close()


def _train(scenes, epochs, seed, out, write, device, jobs, lidar_weight_decay) -> dict:
    began = time.time()
    torch.manual_seed(seed)
    random.seed(seed)
    preset = SMALL
    model = BEVFusion(preset)
    train_lidar = device != "cpu"  # spconv's backward is CUDA-only
    write(
        f"device {device}, {scenes} scenes x {epochs} epochs, seed {seed}, lidar "
        f"{'trained' if train_lidar else 'frozen at its seed'}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {jobs} scene processes"
    )
    train_set = load_split("train", scenes, preset, jobs)
    val_set = load_split("val", min(VAL_EVERY_EPOCH, scenes), preset, jobs)
    write(f"scenes ready: {time.time() - began:.0f} s")
    # voxelization is the deployment's runtime glue; done once per scene on the CPU
    voxels = [voxelize(torch.from_numpy(s.points), preset) for s in train_set]
    on_device = [tuple(t.to(device) for t in v) for v in voxels]
    model.to(device)
    estimate_lidar_batchnorm(model, on_device[:BN_SCENES])
    lidar = None
    if not train_lidar:
        with torch.no_grad():
            lidar = [model.lidar_backbone(*v) for v in on_device]
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.startswith("lidar_")],
            "weight_decay": WEIGHT_DECAY,
        }
    ]
    if train_lidar:
        groups.append(
            {"params": list(model.lidar_backbone.parameters()), "weight_decay": lidar_weight_decay}
        )
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=2e-3)
    steps = epochs * scenes
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
    )

    def run(s):
        images, depth, points = (t.to(device) for t in scene_inputs(s))
        return tuple(o.cpu() for o in model(images, depth, points))

    start = time.time()
    for epoch in range(epochs):
        model.train()
        if not train_lidar:
            model.lidar_backbone.eval()
        order = list(range(scenes))
        random.shuffle(order)
        total = 0.0
        for i in order:
            s = train_set[i]
            images, depth, _ = (t.to(device) for t in scene_inputs(s))
            lidar_bev = model.lidar_backbone(*on_device[i]) if train_lidar else lidar[i]
            fused = model.fuser(camera_bev(model, images, depth), lidar_bev)
            loss = head_loss(model.head(fused), s.boxes, s.labels, preset)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            schedule.step()
            total += loss.item()
        if train_lidar and epoch == epochs - 1:
            estimate_lidar_batchnorm(model, on_device[:BN_SCENES])
        model.eval()
        score = bev_map(run, val_set, preset)
        write(
            f"epoch {epoch + 1}/{epochs}: loss {total / scenes:.3f}, val mAP "
            f"({len(val_set)} scenes) {score['mAP']:.4f} {score['per_class']}, "
            f"{time.time() - start:.0f} s"
        )
        if epoch < epochs - 1:  # a run stopped by a time limit still leaves its last epoch
            save(model, out.with_name(f"{out.stem}.epoch{epoch + 1}{out.suffix}"))
            out.with_name(f"{out.stem}.epoch{epoch}{out.suffix}").unlink(missing_ok=True)
    save(model, out)
    out.with_name(f"{out.stem}.epoch{epochs - 1}{out.suffix}").unlink(missing_ok=True)
    write(f"wrote {out}; total {time.time() - began:.0f} s")
    return score


def save(model: BEVFusion, out: Path) -> None:
    """The weights in half precision (halves the shipped file; the loaded float model is these
    values exactly), written whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().cpu().half() if v.is_floating_point() else v.cpu()
        for k, v in model.state_dict().items()
    }
    partial = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    torch.save(state, partial)
    partial.replace(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, cuda:N or auto (default: cuda where torch sees a GPU); on CUDA the "
        "lidar backbone trains too",
    )
    add_jobs_argument(parser)
    parser.add_argument(
        "--lidar-weight-decay",
        type=float,
        default=LIDAR_WEIGHT_DECAY,
        help=f"AdamW weight decay of the lidar backbone when it trains (default "
        f"{LIDAR_WEIGHT_DECAY}; the rest: {WEIGHT_DECAY})",
    )
    args = parser.parse_args(argv)
    from bevcc.device import DeviceError
    from bevcc.plugins import get_registry

    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        parser.exit(2, f"bevcc_bevfusion.train: {exc}\n")
    get_registry()  # installs bevcc's correct spconv CPU ops
    train(
        args.scenes,
        args.epochs,
        args.seed,
        args.out,
        device=device,
        jobs=args.jobs,
        lidar_weight_decay=args.lidar_weight_decay,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
