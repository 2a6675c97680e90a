"""Metrics for sensitivity analysis. Higher is better for all of them.

A metric is `fn(outputs, reference, batches) -> float`: `outputs` and `reference` are lists (one
per batch) of tuples of output tensors of the model under test and of the float model, `batches`
the evaluation batches (input arrays, plus whatever else the data carries, such as labels).
Built-in fidelity metrics need no labels; task metrics (nuScenes mAP/NDS, a classifier's
accuracy) register through the `bevcc_register_metrics` hook: `registry.add_metric(name, fn)`.
"""

from __future__ import annotations

import math

import torch

MAX_SQNR_DB = 200.0  # an exact match; keeps tables finite


def sqnr_db(outputs, reference, batches) -> float:
    """Signal-to-quantization-noise ratio over every output element of every batch."""
    signal = noise = 0.0
    for outs, refs in zip(outputs, reference, strict=True):
        for out, ref in zip(outs, refs, strict=True):
            ref64, out64 = ref.double(), out.double()
            signal += float((ref64**2).sum())
            noise += float(((out64 - ref64) ** 2).sum())
    if noise == 0.0:
        return MAX_SQNR_DB
    return min(MAX_SQNR_DB, 10.0 * math.log10(max(signal, 1e-300) / noise))


def cosine(outputs, reference, batches) -> float:
    """Mean cosine similarity of each flattened output with the float one."""
    values = []
    for outs, refs in zip(outputs, reference, strict=True):
        for out, ref in zip(outs, refs, strict=True):
            values.append(
                float(
                    torch.nn.functional.cosine_similarity(
                        out.double().flatten(), ref.double().flatten(), dim=0
                    )
                )
            )
    return sum(values) / len(values) if values else 1.0


BUILTIN = {"sqnr": sqnr_db, "cosine": cosine}
