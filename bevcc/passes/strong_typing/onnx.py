"""onnx `strong_typing`: the file says each layer's precision in its tensor types, as TensorRT 11
builds it (and TensorRT 10 with --stronglyTyped): INT8 where Q/DQ say so, fp16 for every other
float layer, fp32 only where fp16 cannot hold the layer's values, with the reason.

The decision is bevcc's (_decide: calibrated ranges, weights, keep_fp32), the rewrite AutoCast's
(_autocast). The file records what it declares in its metadata (bevcc.trt.typing), so `bevcc lint`
can hold each fp32 layer against a stated reason.
"""

from __future__ import annotations

import json
from collections import Counter

from bevcc.device import device_of
from bevcc.ir.onnx import OnnxIR
from bevcc.passes.strong_typing import ONNX
from bevcc.passes.strong_typing._autocast import to_fp16
from bevcc.passes.strong_typing._decide import UNTYPED, fp32_nodes
from bevcc.passes.strong_typing._ranges import activation_ranges, float_initializers
from bevcc.pm.pass_base import Pass, PassResult
from bevcc.trt.typing import FLOAT_PRECISION_KEY, FP32_NODES_KEY

_MAC_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


class StrongTyping(Pass, declaration=ONNX):
    def report(self, stats: dict) -> list[str]:
        fp32 = stats["fp32_nodes"]
        lines = [
            f"{stats['fp16_nodes']} compute node(s) fp16 or INT8, {len(fp32)} fp32; "
            f"I/O {stats['io']}; opset {stats['opset']}; ranges from "
            + (f"{stats['batches']} calibration batch(es)" if stats["batches"] else "no data")
        ]
        lines += [f"  fp32 {row['node']} ({row['op']}): {row['reason']}" for row in fp32]
        return lines

    def call(self, ir: OnnxIR) -> PassResult:
        model = ir.to_model()
        calib = self.context.calib if self.context is not None else None
        ranges, batches = (None, 0)
        if calib is not None:
            ranges, batches = activation_ranges(
                model, calib, self.options.max_batches, device_of(self.context)
            )
        keep = [p.strip() for p in self.options.keep_fp32.split(",") if p.strip()]
        decided = fp32_nodes(model, ranges, float_initializers(model), keep)
        typed = to_fp16(model, sorted(decided), keep_io_fp32=self.options.io == "fp32")
        ops = {n.name: n.op_type for n in typed.graph.node}
        fp32 = [
            {"node": name, "op": ops.get(name, "?"), "reason": reason}
            for name, reason in decided.items()
        ]
        _declare(typed, decided)
        fp16_nodes = sum(
            1 for n in typed.graph.node if n.name not in decided and n.op_type not in UNTYPED
        )
        return PassResult(
            OnnxIR.from_model(typed),
            modified=True,
            stats={
                "io": self.options.io,
                "opset": _opset(typed),
                "batches": batches,
                "fp32_nodes": fp32,
                "fp16_nodes": fp16_nodes,
                "casts": Counter(n.op_type for n in typed.graph.node)["Cast"],
                "fp32_mac_layers": sum(1 for row in fp32 if row["op"] in _MAC_OPS),
            },
        )


def _declare(model, decided: dict[str, str]) -> None:
    props = {p.key: p for p in model.metadata_props}
    for key, value in ((FLOAT_PRECISION_KEY, "fp16"), (FP32_NODES_KEY, json.dumps(decided))):
        if key in props:
            props[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)


def _opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
