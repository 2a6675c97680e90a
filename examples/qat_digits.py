"""QAT with bevcc: calibrate, fine-tune the fake-quant model in your own loop, re-export.

    .venv/bin/python examples/qat_digits.py [--steps 60] [--out build/qat_digits] [--device D]

bevcc's qdq_insert returns an ordinary nn.Module (a torch.fx.GraphModule) whose quantizers train
with a straight-through gradient; `learn_amax()` also trains their ranges. Nothing here is
specific to the digits model except the data. `--device` (cpu, cuda, cuda:N, auto: the default,
cuda where there is one) is where calibration and the fine-tuning run; the model comes back to
the CPU to be measured and exported.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import bevcc
from bevcc.device import resolve_device
from bevcc.quant.quantizer import TensorQuantizer
from bevcc.reference.digits import accuracy, calibration_batches, trained_digits_net


def fine_tune(
    module: torch.nn.Module,
    images,
    labels,
    steps: int,
    lr: float = 2e-5,
    seed: int = 0,
    device: str = "cpu",
) -> None:
    """Train `module` on `device` (each batch moved there as it is drawn); it ends on the CPU."""
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same batches anywhere
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    module.to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    for _ in range(steps):
        batch = torch.randint(len(x), (64,), generator=generator)
        optimizer.zero_grad()
        logits = module(x[batch].to(device))
        torch.nn.functional.cross_entropy(logits, y[batch].to(device)).backward()
        optimizer.step()
    module.eval().cpu()


def main(
    steps: int = 60, out: Path = Path("build/qat_digits"), registry=None, device: str = "auto"
) -> dict:
    device = resolve_device(device)  # a missing GPU fails here, before any training
    model, example, (train_x, train_y), (test_x, test_y) = trained_digits_net()
    ptq = bevcc.compile(
        (model, example),
        pipeline="fx(bn_fold,qdq_insert)",
        calib=calibration_batches(train_x),
        registry=registry,
        device=device,
    )
    fake_quant = ptq.ir.module  # calibrated; quantizers are nn.Modules inside it
    results = {
        "float": accuracy(model, test_x, test_y),
        "ptq": accuracy(fake_quant, test_x, test_y),
    }

    for quantizer in fake_quant.modules():
        if isinstance(quantizer, TensorQuantizer):
            quantizer.learn_amax()  # optional: train the ranges too
    fine_tune(fake_quant, train_x, train_y, steps, device=device)
    results["qat"] = accuracy(fake_quant, test_x, test_y)

    out.mkdir(parents=True, exist_ok=True)
    path = out / "digits_qat.onnx"
    bevcc.compile(
        ptq.ir, pipeline="export{dynamic_batch=true},onnx(check)", output=path, registry=registry
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    results["qat deployed file"] = accuracy(
        lambda images: session.run(None, {"image": np.asarray(images)})[0], test_x, test_y
    )
    results["file"] = str(path)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("build/qat_digits"))
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    args = parser.parse_args()
    for key, value in main(args.steps, args.out, device=args.device).items():
        print(f"{key:>18}: {value:.4f}" if isinstance(value, float) else f"{key:>18}: {value}")
