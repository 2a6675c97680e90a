"""The INT8 / FP16 / FP32 shares of a set file's multiply-accumulates.

Each compute layer's precision is in the file, not in build flags: TensorRT 11 builds every file
strongly typed (TensorRT 10 with --stronglyTyped, as build_trt_engines.sh asks), so a layer runs
INT8 when Q/DQ feed its input and weight and otherwise in the type of its float tensors
(bevcc.lint.typing reads them); a libspconv layer runs INT8 where its `precision` attribute says
so and FP16 otherwise. A file whose float tensors are float32 (not typed by strong_typing) counts
its float layers FP32, as TensorRT 11 builds them.
"""

from __future__ import annotations

from bevcc.lint.layers import Layer

PRECISIONS = ("int8", "fp16", "fp32")


def mac_shares(layers: list[Layer]) -> dict:
    """{"int8": MACs, "fp16": ..., "fp32": ..., "total": ..., "<p>_share": fraction} (shares
    are 0 when the file counts no MACs; a bf16 layer would count under its own key)."""
    macs = dict.fromkeys(PRECISIONS, 0)
    for layer in layers:
        macs[layer.precision] = macs.get(layer.precision, 0) + layer.macs
    total = sum(macs.values())
    shares = {f"{p}_share": round(n / total, 6) if total else 0.0 for p, n in macs.items()}
    return {**macs, "total": total, **shares}
