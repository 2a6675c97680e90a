"""bevcc against the tools users would pick instead, side by side in one run.

Run: .venv/bin/python benchmarks/compare.py [--sizes 25,100,400,1600] [--peer-limit 400]
(writes benchmarks/results.md and benchmarks/results.json; takes about 15 minutes on 2 cores)

Every tool gets the same float ONNX (the block graph: conv-BN-ReLU, conv-BN + residual Add,
1x1 conv, Concat, 1x1 fuse conv; about 10 ONNX nodes per block) and the same 8 calibration
batches, and runs in a fresh process so its peak RSS is its own:
- bevcc: onnx(bn_fold,qdq_insert,quantizer_unify) with max calibration, written to a file;
- onnxruntime quantize_static: QDQ, per-channel weights, symmetric INT8 activations, MinMax;
- nvidia-modelopt ONNX int8 (max calibration, CPU execution provider);
- nvidia-modelopt torch: mtq.quantize(INT8_DEFAULT_CFG) on the same PyTorch model, then
  torch.onnx.export.
Time is the tool's work (after its imports). Every output file goes through `bevcc lint`
(predicted Reformats, INT8 MAC share). Peers run up to --peer-limit blocks: they grow faster
than the graph (see the table), so the largest size is bevcc's alone.
A second table measures calibration overhead on the camera backbone (ResNet-50 at 256x704).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS = ("bevcc", "onnxruntime", "modelopt_onnx", "modelopt_torch")


# ---- children: one tool, one size, one process ----------------------------------------------
def child(tool: str, blocks: int, workdir: Path) -> dict:
    import numpy as np

    source, out = workdir / f"blocks{blocks}.onnx", workdir / f"{tool}_{blocks}.onnx"
    batches = [dict(np.load(workdir / f"calib_{i}.npz")) for i in range(8)]
    runner = {
        "bevcc": _bevcc,
        "onnxruntime": _onnxruntime,
        "modelopt_onnx": _modelopt_onnx,
        "modelopt_torch": _modelopt_torch,
    }[tool]
    prepare, work = runner(source, out, batches, blocks)
    prepare()  # imports, outside the timing
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    from bevcc.ir.onnx import read_onnx_file
    from bevcc.lint.checks import lint_model

    report = lint_model(read_onnx_file(out), str(out))
    return {
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "qdq_pairs": report.qdq_pairs,
        "reformats": report.reformats,
        "encoding_errors": len(report.problems),
        "int8_mac_share": round(report.int8_mac_share, 4),
    }


def _bevcc(source, out, batches, blocks):
    def prepare():
        import bevcc  # noqa: F401
        from bevcc.plugins import load_plugins

        prepare.registry = load_plugins(autoload=False).registry

    def work():
        import bevcc

        bevcc.compile(
            str(source),
            pipeline="onnx(bn_fold,qdq_insert,quantizer_unify)",
            calib=batches,
            output=out,
            registry=prepare.registry,
            stream=io.StringIO(),  # the report is not needed here
        )

    return prepare, work


def _onnxruntime(source, out, batches, blocks):
    def prepare():
        import onnxruntime.quantization  # noqa: F401

    def work():
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter(batches)

            def get_next(self):
                return next(self.items, None)

        quantize_static(
            str(source),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )

    return prepare, work


def _modelopt_onnx(source, out, batches, blocks):
    def prepare():
        import modelopt.onnx.quantization  # noqa: F401

    def work():
        import numpy as np
        from modelopt.onnx.quantization import quantize

        data = np.concatenate([b["input"] for b in batches])
        quantize(
            str(source),
            quantize_mode="int8",
            calibration_data=data,
            calibration_method="max",
            output_path=str(out),
            calibration_eps=["cpu"],
        )

    return prepare, work


def _modelopt_torch(source, out, batches, blocks):
    def prepare():
        import modelopt.torch.quantization  # noqa: F401

    def work():
        import io
        import warnings

        import modelopt.torch.quantization as mtq
        import torch

        from bevcc.reference.block_graph import block_graph

        model, example = block_graph(blocks)
        inputs = [torch.from_numpy(b["input"]) for b in batches]

        def loop(m):
            for x in inputs:
                m(x)

        quantized = mtq.quantize(model, mtq.INT8_DEFAULT_CFG, loop)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                quantized,
                example,
                buffer,
                dynamo=False,
                opset_version=17,
                input_names=["input"],
                output_names=["output"],
            )
        out.write_bytes(buffer.getvalue())

    return prepare, work


# ---- calibration overhead --------------------------------------------------------------------
def calibration_overhead() -> dict:
    import torch
    from bevcc_bevfusion.resnet import resnet50

    import bevcc
    from bevcc.plugins import load_plugins
    from bevcc.quant.quantizer import TensorQuantizer

    model, (image,) = resnet50()
    generator = torch.Generator().manual_seed(1)
    batches = [
        {"image": torch.randn(1, 3, 256, 704, generator=generator).numpy()} for _ in range(4)
    ]
    result = bevcc.compile(
        (model, (image,)),
        calib=batches,
        pipeline="fx(bn_fold,qdq_insert{calibrator=histogram:percentile},quantizer_unify)",
        registry=load_plugins(autoload=False).registry,
        stream=io.StringIO(),  # the report is not needed here
    )
    fake_quant = result.ir.module
    quantizers = [q for q in fake_quant.modules() if isinstance(q, TensorQuantizer)]

    def timed(fn, repeats=3):
        with torch.no_grad():
            fn()
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
        return (time.perf_counter() - start) / repeats

    float_s = timed(lambda: model(image))
    quant_s = timed(lambda: fake_quant(image))
    activations = [q for q in quantizers if q.axis is None]
    for q in activations:
        q.start_calibration()
    collect_s = timed(lambda: fake_quant(image))
    for q in activations:
        q.calibrating, q._calibrator = False, None
    return {
        "model": "ResNet-50, 1x3x256x704",
        "calibrator": "histogram:percentile",
        "float_forward_s": float_s,
        "fake_quant_forward_s": quant_s,
        "calibration_forward_s": collect_s,
        "fake_quant_ratio": quant_s / float_s,
        "calibration_ratio": collect_s / float_s,
    }


# ---- the run ---------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="25,100,400,1600")
    parser.add_argument("--peer-limit", type=int, default=400)
    parser.add_argument("--timeout", type=int, default=1200)
    parser.add_argument("--child", nargs=3, metavar=("TOOL", "BLOCKS", "DIR"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), Path(args.child[2]))))
        return 0
    import numpy as np
    import onnx

    from bevcc.reference.block_graph import block_graph_onnx

    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rng = np.random.default_rng(0)
        for i in range(8):
            np.savez(
                workdir / f"calib_{i}.npz",
                input=rng.standard_normal((1, 8, 8, 8)).astype(np.float32),
            )
        for blocks in sizes:
            model = block_graph_onnx(blocks)
            onnx.save(model, workdir / f"blocks{blocks}.onnx")
            nodes = len(model.graph.node)
            for tool in TOOLS:
                if tool != "bevcc" and blocks > args.peer_limit:
                    continue
                row = {"tool": tool, "blocks": blocks, "nodes": nodes}
                try:
                    proc = subprocess.run(
                        [sys.executable, __file__, "--child", tool, str(blocks), str(workdir)],
                        capture_output=True,
                        text=True,
                        timeout=args.timeout,
                        check=False,
                    )
                    if proc.returncode == 0:
                        row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
                    else:
                        row["error"] = proc.stderr.strip().splitlines()[-1][:200]
                except subprocess.TimeoutExpired:
                    row["error"] = f"timeout after {args.timeout} s"
                print(json.dumps(row), file=sys.stderr, flush=True)
                runs.append(row)
    overhead = calibration_overhead()
    data = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "runs": runs,
        "calibration_overhead": overhead,
        "goals": _goals(runs, overhead),
    }
    (HERE / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (HERE / "results.md").write_text(_markdown(data))
    print(_markdown(data))
    return 0


def _goals(runs, overhead) -> dict:
    bevcc = {r["blocks"]: r for r in runs if r["tool"] == "bevcc" and "seconds" in r}
    sizes = sorted(bevcc)
    growth = {
        f"{a}->{b}": bevcc[b]["seconds"] / bevcc[a]["seconds"]
        for a, b in itertools.pairwise(sizes)
        if b == 4 * a
    }
    speedups = {}
    for blocks in sizes:
        peers = [
            r["seconds"]
            for r in runs
            if r["blocks"] == blocks and r["tool"] != "bevcc" and "seconds" in r
        ]
        if peers:
            speedups[blocks] = min(peers) / bevcc[blocks]["seconds"]
    return {
        "bevcc_time_growth_per_4x": growth,
        "speedup_vs_fastest_peer": speedups,
        "fake_quant_forward_ratio": overhead["fake_quant_ratio"],
    }


def _markdown(data) -> str:
    runs = data["runs"]
    bevcc = {r["blocks"]: r.get("seconds") for r in runs if r["tool"] == "bevcc"}
    lines = [
        "# bevcc vs peers (one run, same float ONNX and calibration batches)",
        "",
        (
            f"Machine: {data['machine']}, 2 cores, CPU only. "
            "Reproduce: `.venv/bin/python benchmarks/compare.py`."
        ),
        "",
        (
            "| blocks | nodes | tool | time (s) | x bevcc time | peak RSS (MB) | Q/DQ pairs | "
            "predicted Reformats | encoding errors | INT8 MACs |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if "seconds" not in r:
            lines.append(
                f"| {r['blocks']} | {r['nodes']} | {r['tool']} | {r['error']} | | | | | | |"
            )
            continue
        ratio = r["seconds"] / bevcc[r["blocks"]] if bevcc.get(r["blocks"]) else float("nan")
        lines.append(
            f"| {r['blocks']} | {r['nodes']} | {r['tool']} | {r['seconds']:.2f} | "
            f"{ratio:.1f} | {r['peak_rss_mb']:.0f} | {r['qdq_pairs']} | "
            f"{r['reformats']} | {r['encoding_errors']} | "
            f"{100 * r['int8_mac_share']:.0f}% |"
        )
    o, goals = data["calibration_overhead"], data["goals"]
    lines += [
        "",
        f"## Calibration overhead ({o['model']}, {o['calibrator']})",
        "",
        (
            "| float forward (s) | fake-quant forward (s) | ratio | calibration forward (s) | "
            "ratio |"
        ),
        "|---|---|---|---|---|",
        (
            f"| {o['float_forward_s']:.3f} | {o['fake_quant_forward_s']:.3f} | "
            f"{o['fake_quant_ratio']:.2f} | {o['calibration_forward_s']:.3f} | "
            f"{o['calibration_ratio']:.2f} |"
        ),
        "",
        "## Goals",
        "",
    ]
    for key, value in goals["bevcc_time_growth_per_4x"].items():
        lines.append(f"- bevcc time growth {key} blocks: {value:.2f}x (goal <= 4.5)")
    for blocks, value in goals["speedup_vs_fastest_peer"].items():
        lines.append(
            f"- {blocks} blocks: fastest peer / bevcc = {value:.1f}x"
            + (" (goal >= 10 at ~3600 nodes)" if blocks == 400 else "")
        )
    lines.append(
        f"- fake-quant forward / float forward: {goals['fake_quant_forward_ratio']:.2f}"
        " (goal <= 1.5)"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
