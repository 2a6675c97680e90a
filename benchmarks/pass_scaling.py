"""Wall time of each built-in pass and of the manager's checks on block graphs of growing size.

    python benchmarks/pass_scaling.py [--sizes 25,100,400] [--repeat 3]
                                      [--out benchmarks/pass_scaling.md]

Writes a markdown table (time per size, and the ratio between consecutive sizes) and prints it.
Linear work grows by the size ratio; work that scans all nodes per node grows by its square.
The deterministic counterpart, run by pytest, is tests/test_scaling.py.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
from torch import nn

from bevcc.atomic import atomic_path
from bevcc.ir.fx import FxIR
from bevcc.ir.onnx import OnnxIR
from bevcc.plugins import load_plugins
from bevcc.reference.block_graph import block_graph, block_graph_onnx

FLAG = 1.25  # a ratio above FLAG x the size ratio is marked as possibly super-linear


@dataclass(frozen=True)
class Case:
    label: str
    build: Callable[[int], object]  # blocks -> a fresh IR (not timed)
    run: Callable[[object], object]  # the timed work


class Graphs:
    """Block graphs per size, built once; every timed run gets a fresh IR made from them."""

    def __init__(self):
        self._onnx: dict[int, onnx.ModelProto] = {}
        self._torch: dict[int, tuple[nn.Module, tuple]] = {}

    def onnx(self, blocks: int) -> OnnxIR:
        if blocks not in self._onnx:
            self._onnx[blocks] = block_graph_onnx(blocks)
        return OnnxIR.from_model(self._onnx[blocks])

    def onnx_dead(self, blocks: int) -> OnnxIR:
        """One unused Neg per Relu: `cleanup` removes a node in every block."""
        ir = self.onnx(blocks)
        for i, relu in enumerate([n for n in ir.graph.nodes if n.op == "Relu"]):
            dead = gs.Variable(f"dead_{i}", dtype=np.float32)
            ir.graph.nodes.append(
                gs.Node("Neg", f"dead_{i}", inputs=[relu.outputs[0]], outputs=[dead])
            )
        return ir

    def fx(self, blocks: int) -> FxIR:
        if blocks not in self._torch:
            self._torch[blocks] = block_graph(blocks)
        module, inputs = self._torch[blocks]
        return FxIR.trace(module, inputs)

    def fx_dead(self, blocks: int) -> FxIR:
        """One unused call per block into a submodule only it calls: `dce` removes both."""
        ir = self.fx(blocks)
        for i, branch in enumerate(
            [n for n in ir.graph.nodes if n.op == "call_module" and n.target.endswith("branch")]
        ):
            ir.module.add_submodule(f"dead_{i}", nn.ReLU())
            with ir.graph.inserting_after(branch):
                ir.graph.call_module(f"dead_{i}", (branch.args[0],))
        ir.module.recompile()
        return ir


def cases(graphs: Graphs) -> list[Case]:
    registry = load_plugins(autoload=False).registry

    def pass_call(name: str, ir: str, conversion: bool = False):
        cls = registry.lookup(name, ir, conversion=conversion)
        return lambda subject: cls()(subject)

    return [
        Case("onnx `cleanup`", graphs.onnx, pass_call("cleanup", "onnx")),
        Case("onnx `cleanup` (1 dead node / Relu)", graphs.onnx_dead, pass_call("cleanup", "onnx")),
        Case("onnx `check`", graphs.onnx, pass_call("check", "onnx")),
        Case("onnx manager: verify", graphs.onnx, lambda ir: ir.verify()),
        Case("onnx manager: fingerprint", graphs.onnx, lambda ir: ir.fingerprint()),
        Case(
            "onnx manager: verify + fingerprint",
            graphs.onnx,
            lambda ir: (ir.verify(), ir.fingerprint()),
        ),
        Case("onnx dump (--print-ir-after)", graphs.onnx, lambda ir: ir.dump()),
        Case("fx `dce`", graphs.fx, pass_call("dce", "fx")),
        Case("fx `dce` (1 dead call / block)", graphs.fx_dead, pass_call("dce", "fx")),
        Case("`export` (fx -> onnx)", graphs.fx, pass_call("export", "fx", conversion=True)),
        Case("fx manager: verify", graphs.fx, lambda ir: ir.verify()),
        Case("fx manager: fingerprint", graphs.fx, lambda ir: ir.fingerprint()),
        Case(
            "fx manager: verify + fingerprint",
            graphs.fx,
            lambda ir: (ir.verify(), ir.fingerprint()),
        ),
        Case("fx dump (--print-ir-after)", graphs.fx, lambda ir: ir.dump()),
    ]


def best_time(case: Case, blocks: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        subject = case.build(blocks)
        gc.collect()
        start = time.perf_counter()
        case.run(subject)
        best = min(best, time.perf_counter() - start)
    return best


def _seconds(t: float) -> str:
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def table(sizes: list[int], graphs: Graphs, all_cases: list[Case], repeat: int) -> str:
    steps = list(itertools.pairwise(sizes))
    header = ["step", *(f"{n} blocks" for n in sizes), *(f"t({b})/t({a})" for a, b in steps)]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    nodes = [f"{graphs.onnx(n).node_count()} / {graphs.fx(n).node_count()}" for n in sizes]
    lines.append(
        "| nodes (onnx / fx) | " + " | ".join(nodes + [f"size x{b / a:g}" for a, b in steps]) + " |"
    )
    for i, case in enumerate(all_cases, 1):
        print(f"[{i}/{len(all_cases)}] {case.label}", file=sys.stderr, flush=True)
        times = [best_time(case, n, repeat) for n in sizes]
        ratios = []
        for (a, b), (ta, tb) in zip(steps, itertools.pairwise(times), strict=True):
            ratio = tb / ta
            ratios.append(f"{ratio:.2f}" + (" (!)" if ratio > FLAG * b / a else ""))
        lines.append(f"| {case.label} | " + " | ".join([*map(_seconds, times), *ratios]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="25,100,400",
        help="comma-separated block counts, ascending (default 25,100,400)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the best is kept")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).with_name("pass_scaling.md")),
        help="markdown file to write (default benchmarks/pass_scaling.md)",
    )
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give comma-separated integers, e.g. 25,100,400")
    if not sizes or sizes != sorted(set(sizes)) or sizes[0] < 1 or args.repeat < 1:
        parser.error("--sizes must be ascending positive integers and --repeat at least 1")
    warnings.simplefilter("ignore")  # torch.onnx's deprecation notices

    graphs = Graphs()
    all_cases = cases(graphs)
    for case in all_cases:  # first calls import modules and fill caches: keep them out of cells
        case.run(case.build(2))
    body = table(sizes, graphs, all_cases, args.repeat)
    text = (
        "# Pass scaling\n\n"
        "Wall time, best of {repeat}, of one call on a fresh block graph (`bevcc/reference/"
        "block_graph.py`: 10 ONNX nodes per block, BatchNormalization kept); building the graph "
        "is not timed. Linear work grows by the size ratio, n log n slightly more, work that "
        "scans all nodes per node by its square; `(!)` marks a ratio above {flag} x the size "
        "ratio. Deterministic counterpart: `tests/test_scaling.py`.\n\n"
        "Generated by `python benchmarks/pass_scaling.py --sizes {sizes} --repeat {repeat}` "
        "(Python {py}, torch {torch}, onnx {onnx}, onnx-graphsurgeon {gs}; {machine}, "
        "{cpus} CPUs).\n\n"
    ).format(
        repeat=args.repeat,
        flag=FLAG,
        sizes=",".join(map(str, sizes)),
        py=platform.python_version(),
        torch=torch.__version__,
        onnx=onnx.__version__,
        gs=gs.__version__,
        machine=platform.machine(),
        cpus=os.cpu_count(),
    ) + body
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
