"""Calibrating a raw export against the same file simplified first: the whole `bevcc compile`.

Run: .venv/bin/python benchmarks/onnx_simplify.py [--batches 8]
(writes benchmarks/onnx_simplify.md; needs mmdet, as plugins/bevcc-mmdet3d installs it)

mmdet's SwinTransformer (embed_dims 32, depths 2/2/2/2, heads 1/2/4/8, window 7, seeded) is
exported raw at 1x3x224x224 with torch.onnx's TorchScript path, the way a user holds it. Two
`bevcc compile` processes then quantize it on the same N single-sample batches:
`onnx(qdq_insert)` on the raw file and `onnx(simplify,qdq_insert)`. Each is timed as a whole
(start-up, loading, every pass and its checks, the write): what the user waits for. The raw
file's shape arithmetic hides 67 layer inputs' sizes from shape inference, and calibration
reads each such tensor in a run of its own over all the batches, so the ratio grows with N.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def export_swin(path: Path) -> None:
    import torch
    from bevcc_mmdet3d import ext_standin

    ext_standin.install()
    from mmdet.models.backbones import SwinTransformer

    torch.manual_seed(0)
    swin = SwinTransformer(
        embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=7
    )
    swin.eval()
    with torch.no_grad():
        torch.onnx.export(
            swin, (torch.randn(1, 3, 224, 224),), str(path), dynamo=False, input_names=["img"]
        )


def compile_seconds(model: Path, calib: Path, pipeline: str, out: Path) -> tuple[float, dict]:
    """Wall seconds of one `bevcc compile` process, and its timing table's node counts and
    pass seconds."""
    bevcc = Path(sys.executable).with_name("bevcc")
    start = time.perf_counter()
    proc = subprocess.run(
        [str(bevcc), "compile", str(model), "--pipeline", pipeline, "--calib", str(calib),
         "-o", str(out), "--timing", "--progress", "off"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    # --timing's table (stderr): pass seconds, verify seconds, nodes after, step
    passes = {
        f"onnx({m.group(3)})": (float(m.group(1)), int(m.group(2)))
        for m in re.finditer(
            r"^\s+([\d.]+)\s+[\d.]+\s+(\d+)\s+onnx\((\w+)", proc.stderr, re.MULTILINE
        )
    }
    return seconds, passes


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = tmp / "swin_raw.onnx"
        export_swin(raw)
        calib = tmp / "calib.npz"
        rng = np.random.default_rng(0)
        images = rng.standard_normal((args.batches, 3, 224, 224)).astype(np.float32)
        np.savez(calib, img=images)
        runs = {
            pipeline: compile_seconds(raw, calib, pipeline, tmp / "out.onnx")
            for pipeline in ("onnx(qdq_insert)", "onnx(simplify,qdq_insert)")
        }
    raw_s, simple_s = (seconds for seconds, _ in runs.values())
    lines = [
        "| pipeline | nodes in the Q/DQ file | simplify (s) | qdq_insert (s) | whole process (s) |",
        "|---|---|---|---|---|",
    ]
    for pipeline, (seconds, passes) in runs.items():
        simplify = passes.get("onnx(simplify)")
        quantize = passes["onnx(qdq_insert)"]
        lines.append(
            f"| `{pipeline}` | {quantize[1]} | {simplify[0] if simplify else 0:.1f} | "
            f"{quantize[0]:.1f} | {seconds:.1f} |"
        )
    ratio = raw_s / simple_s
    table = "\n".join(lines)
    summary = (
        f"Raw vs simplified, whole process: {ratio:.1f}x "
        f"({raw_s:.1f} s / {simple_s:.1f} s) on {args.batches} batches."
    )
    print(table, summary, sep="\n\n")
    Path(__file__).with_suffix(".md").write_text(
        "# Raw export vs simplified: calibration time\n\n"
        f"`python benchmarks/onnx_simplify.py --batches {args.batches}`: mmdet's "
        "SwinTransformer (embed_dims 32, depths 2/2/2/2, heads 1/2/4/8, window 7) exported raw "
        "(torch.onnx, TorchScript path, 6014 nodes), quantized by two `bevcc compile` "
        "processes on the same single-sample batches.\n\n"
        f"{table}\n\n{summary}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
