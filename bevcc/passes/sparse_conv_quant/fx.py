"""fx `sparse_conv_quant`: INT8 quantizers on spconv convolutions and sparse residual Adds.

Each sparse conv gets a per-tensor quantizer on its input features and a per-output-channel
quantizer on its weight (bevcc.sparse.quant_modules); each residual Add of two sparse tensors'
features gets a quantizer per input (libspconv's Add reads both in INT8, with
input0/input1_dynamic_range). Layers named by the `fp16` option stay float: by default the first
sparse conv, whose 5-channel raw voxel input quantizes badly (CUDA-BEVFusion keeps it fp16 too).
ReLUs stay in the PyTorch model; export_libspconv folds them into the conv's `activation`.
Run quantizer_unify after it so a block input's conv1 and Add identity share one quantizer.
"""

from __future__ import annotations

import fnmatch
import operator
import re

import torch
from torch import fx

from bevcc.device import device_of
from bevcc.errors import UsageError
from bevcc.ir.fx import FxIR
from bevcc.passes.sparse_conv_quant import FX
from bevcc.pm.pass_base import Pass, PassResult
from bevcc.quant.calibrate import calibrate
from bevcc.quant.calibrators import canonical
from bevcc.quant.quantizer import TensorQuantizer
from bevcc.quant.ranges import ReplaysRanges
from bevcc.sparse.layers import is_sparse_conv


class SparseConvQuant(ReplaysRanges, Pass, declaration=FX):
    def report(self, stats: dict) -> list[str]:
        convs = ", ".join(f"{k} {v}" for k, v in stats.get("quantized", {}).items())
        head = (
            f"quantized {sum(stats.get('quantized', {}).values())} sparse convs ({convs}) "
            f"and {stats.get('adds', 0)} residual Adds, calibrated on "
            f"{stats.get('batches', 0)} batches"
        )
        lines = [head, f"  fp16: {', '.join(stats.get('fp16', [])) or 'none'}"]
        lines += [f"  amax floored (all-zero values): {n}" for n in stats.get("floored", [])]
        lines += [f"  fp16 pattern matched nothing: {p}" for p in stats.get("unused", [])]
        return lines

    def call(self, ir: FxIR) -> PassResult:
        from bevcc.sparse.quant_modules import quantize_sparse_conv

        canonical(self.options.calibrator)
        graph, module = ir.graph, ir.module
        modules = dict(module.named_modules())
        convs = [
            n
            for n in graph.nodes
            if n.op == "call_module"
            and is_sparse_conv(modules.get(n.target))
            and not hasattr(modules[n.target], "weight_quantizer")
        ]
        if not convs:
            return PassResult(ir, modified=False, stats={"quantized": {}})
        adds = [n for n in graph.nodes if _is_sparse_residual_add(n)]
        fp16, unused = self._fp16([n.target for n in convs], [n.name for n in adds])
        if self.options.fp16_weights:
            # Without this an INT8 file and its PyTorch model drift apart layer by layer: one
            # fp16 rounding of a weight flips an activation's INT8 rounding, and the flips grow
            # (measured: 7 dB SQNR after 21 layers of an untrained encoder on real voxels).
            _round_to_fp16(module)
        new: dict[str, TensorQuantizer] = {}
        quantized: dict[str, int] = {}
        floored: list[str] = []
        for node in convs:
            if node.target in fp16:
                continue
            conv = modules[node.target]
            label = type(conv).__name__
            if quantize_sparse_conv(conv):
                floored.append(f"{node.target}.weight_quantizer")
            self._quantize_input(ir, node, 0, f"{node.target}.input_quantizer", new)
            quantized[label] = quantized.get(label, 0) + 1
        for node in adds:
            if node.name in fp16:
                continue
            for i in (0, 1):
                self._quantize_input(ir, node, i, f"{node.name}_input{i}_quantizer", new)
        module.recompile()
        calib = self.context.calib if self.context is not None else None
        if calib is None:
            raise UsageError(
                "sparse_conv_quant needs calibration data: give --calib DATA with the voxel inputs"
            )
        names = [n.name for n in graph.nodes if n.op == "placeholder"]
        report = calibrate(
            module,
            calib,
            names,
            ir.example_inputs,
            quantizers=new,
            max_batches=self.options.max_batches,
            device=device_of(self.context),
            **self.ranges_arguments(),
        )
        return PassResult(
            ir,
            modified=True,
            stats={
                "quantized": dict(sorted(quantized.items())),
                "adds": sum(n.name not in fp16 for n in adds),
                "fp16": sorted(fp16),
                "unused": unused,
                "batches": report.batches,
                "floored": floored + report.floored,
            },
        )

    def _fp16(self, conv_names: list[str], add_names: list[str]) -> tuple[set[str], list[str]]:
        """Names kept fp16: sparse convs (module names) and residual Adds (node names)."""
        text = self.options.fp16.strip()
        patterns = [p for p in re.split(r"[,\s]+", text) if p]
        names = conv_names + add_names
        chosen, unused = set(), []
        for pattern in patterns:
            if pattern == "first":
                chosen.add(names[0])
                continue
            hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
            chosen.update(hits)
            if not hits:
                unused.append(pattern)
        return chosen, unused

    def _quantize_input(self, ir, node, index, qualname, new) -> None:
        quantizer = TensorQuantizer(
            calibrator=self.options.calibrator, percentile=self.options.percentile
        )
        ir.module.add_submodule(qualname, quantizer)
        new[qualname] = quantizer
        with ir.graph.inserting_before(node):
            qnode = ir.graph.call_module(qualname, (node.args[index],))
        args = list(node.args)
        args[index] = qnode
        node.args = tuple(args)


def _is_sparse_residual_add(node: fx.Node) -> bool:
    """features + features of two sparse tensors (the sparse basic block's identity Add)."""
    if node.op != "call_function" or node.target is not operator.add or len(node.args) != 2:
        return False
    return all(
        isinstance(a, fx.Node)
        and a.op == "call_function"
        and a.target is getattr
        and a.args[1:] == ("features",)
        for a in node.args
    )


def _round_to_fp16(module) -> None:
    from bevcc.sparse.conv_bias import SparseConvBias

    with torch.no_grad():
        for sub in module.modules():
            if is_sparse_conv(sub) or isinstance(sub, SparseConvBias):
                for tensor in (getattr(sub, "weight", None), getattr(sub, "bias", None)):
                    if tensor is not None:
                        tensor.copy_(tensor.half().float())
