"""The precision each compute layer of a set's file runs in, and the INT8 / FP16 / FP32 shares
of the file's multiply-accumulates.

Two inputs decide it: what the file says about the layer (bevcc.lint: INT8 when it has Q/DQ on
its input and weight, or a libspconv `precision="int8"`; otherwise the type its weight is stored
in) and how the set builds the file (its declared precision: the trtexec flags of
build_trt_engines.sh, or libspconv). The rule, in order:

1. the file quantizes the layer: INT8;
2. a libspconv file: FP16 (libspconv computes every non-INT8 conv in FP16);
3. the file stores the weight as float16: FP16;
4. the build passes `--fp16` (declared int8 or fp16): FP16. The file's tensors are float32, and
   `--fp16` lets TensorRT choose FP16 kernels for them, which it does for convolutions and
   matrix products because they are faster;
5. otherwise (declared fp32): FP32.

Today every ONNX file bevcc writes is float32 with Q/DQ, so rules 1, 4 and 5 decide. A strongly
typed file changes the inputs, not the rule: its float16 weights answer rule 3, and a build
without `--fp16` (the script's PRECISION_FLAGS, read here) leaves its float32 layers FP32.
"""

from __future__ import annotations

from bevcc.deploy.trtexec_script import PRECISION_FLAGS
from bevcc.lint.layers import Layer

PRECISIONS = ("int8", "fp16", "fp32")


def layer_precision(layer: Layer, declared: str) -> str:
    """ "int8", "fp16" or "fp32" for `layer` of a file the set declares `declared`."""
    if layer.int8:
        return "int8"
    if declared == "libspconv" or layer.weight_type == "fp16":
        return "fp16"
    return "fp16" if "--fp16" in PRECISION_FLAGS.get(declared, []) else "fp32"


def mac_shares(layers: list[Layer], declared: str) -> dict:
    """{"int8": MACs, "fp16": ..., "fp32": ..., "total": ..., "<p>_share": fraction} (shares
    are 0 when the file counts no MACs)."""
    macs = dict.fromkeys(PRECISIONS, 0)
    for layer in layers:
        macs[layer_precision(layer, declared)] += layer.macs
    total = sum(macs.values())
    shares = {f"{p}_share": round(macs[p] / total, 6) if total else 0.0 for p in PRECISIONS}
    return {**macs, "total": total, **shares}
