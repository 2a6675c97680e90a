"""Train the small reference on synthetic scenes and write the weights the plugin ships.

    python -m bevcc_bevfusion.train [--scenes 400] [--epochs 12]

The lidar backbone stays at its seeded initialisation with BatchNorm statistics estimated on the
training scenes: spconv's backward pass is CUDA-only, and this machine has none. Everything else
(camera backbone, FPN, depth net, vtransform, fuser, decoder, head) trains end to end.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import torch
from bevcc_bevfusion.dataset import VAL_SCENES, load_split
from bevcc_bevfusion.evaluate import bev_map
from bevcc_bevfusion.lidar import voxelize
from bevcc_bevfusion.model import BEVFusion, scene_inputs
from bevcc_bevfusion.presets import SMALL
from bevcc_bevfusion.targets import head_loss

WEIGHTS = Path(__file__).parent / "weights" / "bevfusion_small.pt"


@torch.no_grad()
def estimate_lidar_batchnorm(model: BEVFusion, scenes) -> None:
    model.lidar_backbone.train()
    for module in model.lidar_backbone.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the scenes
    for s in scenes:
        model.lidar_backbone(*voxelize(torch.from_numpy(s.points), model.preset))
    model.lidar_backbone.eval()


def camera_bev(model: BEVFusion, s):
    images, depth, _ = scene_inputs(s)
    return model.camera_vtransform(model.bev_pool(*model.camera_backbone(images, depth)))


def train(scenes: int, epochs: int, seed: int, out: Path, log=sys.stderr) -> dict:
    torch.manual_seed(seed)
    random.seed(seed)
    preset = SMALL
    model = BEVFusion(preset)
    train_set = load_split("train", scenes, preset)
    val_set = load_split("val", VAL_SCENES, preset)
    estimate_lidar_batchnorm(model, train_set[:100])
    with torch.no_grad():
        lidar = [
            model.lidar_backbone(*voxelize(torch.from_numpy(s.points), preset)) for s in train_set
        ]
    params = [p for n, p in model.named_parameters() if not n.startswith("lidar_backbone.")]
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    steps = epochs * scenes
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
    )
    start = time.time()
    for epoch in range(epochs):
        model.train()
        model.lidar_backbone.eval()
        order = list(range(scenes))
        random.shuffle(order)
        total = 0.0
        for i in order:
            s = train_set[i]
            fused = model.fuser(camera_bev(model, s), lidar[i])
            loss = head_loss(model.head(fused), s.boxes, s.labels, preset)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            schedule.step()
            total += loss.item()
        model.eval()
        score = bev_map(lambda s: model(*scene_inputs(s)), val_set[:40], preset)
        print(
            f"epoch {epoch + 1}/{epochs}: loss {total / scenes:.3f}, val mAP (40 scenes) "
            f"{score['mAP']:.4f} {score['per_class']}, {time.time() - start:.0f} s",
            file=log,
            flush=True,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    # half precision halves the shipped file; the loaded float model is these values exactly
    torch.save(
        {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, out
    )
    return score


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    from bevcc.plugins import get_registry

    get_registry()  # installs bevcc's correct spconv CPU ops
    train(args.scenes, args.epochs, args.seed, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
