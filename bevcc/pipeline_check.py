"""A pipeline checked from pass declarations alone: words, options and IR placement, before any
pass module (torch, onnx) is imported, so a misspelt pass is reported at once."""

from __future__ import annotations

from bevcc.pm.options import build_options
from bevcc.pm.pipeline import Pipeline, placed_steps
from bevcc.registry import IR_KINDS


def check_pipeline(pipeline: Pipeline, registry, input_kind: str) -> str:
    """Raise the UsageError the pass manager would raise for the first bad step (same order,
    same message); return the IR kind the pipeline ends on."""
    kind = input_kind
    for spec, info, step_kind in placed_steps(pipeline, input_kind, IR_KINDS, registry.pass_info):
        build_options(info, spec.options)
        kind = step_kind
    return kind
