"""A pipeline checked from pass declarations alone: words, options and IR placement, before any
pass module (torch, onnx) is imported, so a misspelt pass is reported at once."""

from __future__ import annotations

from bevcc.errors import UsageError
from bevcc.pm.options import build_options
from bevcc.pm.pipeline import IRGroup, Pipeline
from bevcc.registry import IR_KINDS


def check_pipeline(pipeline: Pipeline, registry, input_kind: str) -> str:
    """Raise the UsageError the pass manager would raise for the first bad step (same order,
    same message); return the IR kind the pipeline ends on."""
    kind = input_kind
    for element in pipeline.elements:
        if isinstance(element, IRGroup):
            if element.ir not in IR_KINDS:
                raise UsageError(f"unknown IR '{element.ir}' in pipeline; known: "
                                 f"{', '.join(IR_KINDS)}")
            if element.ir != kind:
                raise UsageError(f"'{element.text()}' runs on {element.ir}, but the pipeline holds "
                                 f"{kind} there; convert first (e.g. export) or regroup")
            for spec in element.steps:
                build_options(registry.pass_info(spec.name, kind, conversion=False), spec.options)
        else:
            info = registry.pass_info(element.name, kind, conversion=True)
            build_options(info, element.options)
            kind = info.output_kind()
    return kind
