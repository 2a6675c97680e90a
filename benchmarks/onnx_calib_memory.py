"""Peak memory and time of ONNX-path calibration (onnx(qdq_insert)) against its memory budget.

Run: .venv/bin/python benchmarks/onnx_calib_memory.py [--blocks 100]
(writes benchmarks/onnx_calib_memory.md)

The float block graph (conv-BN-ReLU, residual Add, Concat, 1x1 convs; 32 channels at 64x64, so
each activation is 512 KiB) is calibrated on 8 batches with calib_memory_mb set from "all at
once" down to a few MB. Every setting runs in a fresh process so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(path: str, budget: int) -> None:
    import numpy as np
    import onnx

    import bevcc
    from bevcc.plugins import load_plugins

    model = onnx.load(path)
    name = model.graph.input[0].name
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    batches = [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(8)]
    start = time.perf_counter()
    result = bevcc.compile(
        path,
        pipeline=f"onnx(qdq_insert{{calib_memory_mb={budget}}})",
        calib=batches,
        registry=load_plugins(autoload=False).registry,
    )
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - start,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "quantizers": result.records[0].stats["quantizers"],
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0
    import onnx

    from bevcc.reference.block_graph import block_graph_onnx

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blocks.onnx"
        onnx.save(block_graph_onnx(args.blocks, channels=32, size=64), path)
        for budget in (1 << 20, 512, 64, 16):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path), str(budget)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rows.append((budget, json.loads(out.strip().splitlines()[-1])))
    lines = ["| calib_memory_mb | peak RSS (MB) | seconds |", "|---|---|---|"]
    lines += [
        f"| {'all at once' if b == 1 << 20 else b} | {r['peak_mb']:.0f} | {r['seconds']:.2f} |"
        for b, r in rows
    ]
    table = "\n".join(lines)
    print(table)
    Path(__file__).with_suffix(".md").write_text(
        f"# ONNX-path calibration memory\n\n`python benchmarks/onnx_calib_memory.py --blocks "
        f"{args.blocks}`: block graph, 32x64x64 activations, 8 batches of 1.\n\n{table}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
