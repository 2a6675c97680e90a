"""`report.json` and `report.md` of a set compile: what each deployable file holds and how it
was made.

report.json, schema "bevcc-set-report/1" (a field that changes meaning or goes away bumps the
number; new fields may appear). Paths are relative to the output directory DIR.

    {
      "schema": "bevcc-set-report/1",
      "bevcc_version": "0.1.0",
      "config": "path/of/set.toml" | null,       # null: compile_set was given an object
      "engine_script": "build_trt_engines.sh",
      "seconds": 312.4,                          # wall time of the set: its files one after
                                                 # another and their report, until it is written
      "time": {"load": 20.1, "trace": 1.2, "passes": 270.3, "export": 18.0, "write": 2.7,
               "other": 0.1},                    # `seconds` by phase: the files' `time` summed,
                                                 # `other` adding what passed between them
      "files": [                                 # in config order
        {
          "name": "camera.backbone",
          "file": "camera.backbone.onnx",
          "engine": "camera.backbone.plan" | null,   # what the script builds; null: libspconv
          "precision": "int8" | "fp16" | "fp32" | "libspconv",
          "input": "...", "calib": "..." | null,     # as resolved from the config
          "pipeline": "fx(bn_fold,...),export,onnx(check)",   # canonical text
          "seconds": 3.21,                           # wall time of this file's compile, from
                                                     # building the model to its report entry
          "time": {                                  # `seconds` by phase (they sum to it):
            "load": 1.1,       # plugins' deferred parts and pass modules imported, the model
                               # built (the config's callable: weights, data) or read
            "trace": 0.3,      # FX tracing and specialization (an ONNX input: 0)
            "passes": 1.5,     # the passes with their checks (`passes[].seconds` + verify)
            "export": 0.2,     # conversions between IRs: export, export_libspconv
            "write": 0.1,      # the file saved, read back and linted for this entry
            "other": 0.0},     # what no phase covers: about 0
          "qdq": {"quantize_linear": 17, "dequantize_linear": 17},   # node counts in the file
          "lint": {                                  # bevcc.lint.checks.lint_model
            "kind": "qdq" | "libspconv",             # libspconv: the libspconv parser's checks
            "errors": 0,                             # encoding/parser problems + Reformats
            "problems": ["..."],
            "predicted_reformats": 0 | null,         # null for libspconv (no TensorRT engine)
            "int8_macs": 123, "total_macs": 456, "int8_mac_share": 0.27,
            "float_layers": ["..."],                 # ONNX names of the MAC layers not in INT8
            "int8_layers": 5, "total_layers": 7,     # libspconv: counted from each sparse
                                                     # conv's `precision` attribute (no Q/DQ)
            "float_precision": "fp16" | null,        # what strong_typing declared
            "warnings": ["TopK '/head/TopK': K = ..."]   # TensorRT limits it passes (lint
                                                     # --json "warnings"); not errors
          },
          "macs": {"int8": 123, "fp16": 333, "fp32": 0, "total": 456,   # by the rule below
                   "int8_share": 0.27, "fp16_share": 0.73, "fp32_share": 0.0},
          "layers": [                                # every MAC layer, in graph order
            {"onnx": "/conv1_3/Conv",                # the node name in the file
             "module": "backbone.layer1.2.conv1" | null,   # the PyTorch module (from the
                                                     # weight's name; null: a computed weight)
             "macs": 1081344, "precision": "int8" | "fp16" | "fp32",
             "fp32_reason": null | "why strong_typing kept it fp32"}],
          "kept_float": ["head"] | null,             # units sensitivity_disable kept float;
                                                     # null: the pass did not run
          "kept_float_layers": {"head": ["head"]} | null,   # those units' layers
          "sensitivity": null | {                    # the last sensitivity_disable run
            "metric": "sqnr" | null,
            "float": 0.70 | null,                    # the float model; null for sqnr and
                                                     # cosine, measured against it
            "all_int8": 40.0 | null, "final": 41.3 | null,
            "target": 32.0 | null,                   # what the decision held the model to
            "goal": "min_sqnr_db=32" | "max_drop=0.005" | "top_k=2" | null,
            "units": 7,                              # quantized units it found
            "ranking": [                             # most sensitive first, at most 10 rows
              {"unit": "head", "alone_quantized": 45.6 | null, "alone_float": 41.3 | null,
               "decision": "float" | "int8"}],
            "report": "reports/camera.backbone/sensitivity.md" | null
          },
          "bn_fold": null | {"folded": 6, "by_pattern": {"Conv2d+BatchNorm2d": 5}, "skipped": 0},
                                                     # summed over bn_fold runs; null: none ran
          "passes": [{"name": "fx(bn_fold)", "ir": "fx", "modified": true, "seconds": 0.002,
                      "verify_seconds": 0.001, "nodes_after": 40, "report": ["..."]}],
          "artifacts": ["reports/camera.backbone/sensitivity.md"]   # what the passes wrote
        }
      ]
    }

Precision of a layer, and the "macs" shares (bevcc/deploy/mac_shares.py; docs/deploy_sets.md):
what the strongly typed build runs it at. INT8 when the file quantizes it (Q/DQ on input and
weight; libspconv `precision="int8"`); otherwise the type of its float tensors (FP16 in a file
the strong_typing pass typed, except the layers it kept FP32); FP16 for libspconv's other convs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bevcc.compiler import CompileResult
from bevcc.config import FileSpec
from bevcc.deploy.mac_shares import mac_shares
from bevcc.deploy.time_accounting import time_text
from bevcc.deploy.trtexec_script import SCRIPT_NAME, engine_name
from bevcc.pm.pass_base import ReportContext
from bevcc.pm.pipeline import parse_pipeline

SCHEMA = "bevcc-set-report/1"
# keys every entry has whatever its pipeline; the rest are the passes' own sections
_BASE_KEYS = (
    "name",
    "file",
    "engine",
    "precision",
    "input",
    "calib",
    "pipeline",
    "seconds",
    "time",
    "qdq",
    "lint",
    "macs",
    "layers",
    "passes",
    "artifacts",
)


def reports_dir(build_dir: Path, spec: FileSpec) -> Path:
    """Where a file's pass artifacts go, so two files' sensitivity reports cannot collide."""
    return build_dir / "reports" / spec.name


def file_entry(
    spec: FileSpec, result: CompileResult, build_dir: Path, seconds: float, registry=None
) -> dict:
    """The report.json entry of one compiled file (reads the written file back)."""
    import onnx

    from bevcc.lint.checks import lint_model

    path = build_dir / f"{spec.name}.onnx"
    model = onnx.load(str(path), load_external_data=False)
    ops = [node.op_type for node in model.graph.node]
    lint = lint_model(model, path.name)
    steps = list(zip(parse_pipeline(result.pipeline).step_names(), result.records, strict=True))
    artifacts = reports_dir(build_dir, spec)
    entry = {
        "name": spec.name,
        "file": path.name,
        "engine": None if spec.precision == "libspconv" else engine_name(spec),
        "precision": spec.precision,
        "input": spec.input,
        "calib": spec.calib,
        "pipeline": result.pipeline,
        "seconds": round(seconds, 3),
        "time": dict(result.time),  # the set compile completes it with the file's lint
        "qdq": {
            "quantize_linear": ops.count("QuantizeLinear"),
            "dequantize_linear": ops.count("DequantizeLinear"),
        },
        "lint": {
            "kind": lint.kind,
            "errors": lint.errors,
            "problems": lint.problems,
            "predicted_reformats": None if lint.kind == "libspconv" else lint.reformats,
            "int8_macs": lint.int8_macs,
            "total_macs": lint.total_macs,
            "int8_mac_share": round(lint.int8_mac_share, 6),
            "float_layers": lint.float_layers,
            "int8_layers": lint.int8_layers,
            "total_layers": len(lint.layers),
            # the float precision the file declares (strong_typing), None when untyped
            "float_precision": None if lint.typing is None else lint.typing.declared,
            # TensorRT operator limits the file passes (bevcc.lint.limits): the engine build
            # rejects it, though the file is valid ONNX; not counted in "errors"
            "warnings": list(lint.warnings),
        },
        "macs": mac_shares(lint.layers),
        "layers": [
            {
                "onnx": layer.onnx,
                "module": layer.module,
                "macs": layer.macs,
                "precision": layer.precision,
                "fp32_reason": layer.fp32_reason,
            }
            for layer in lint.layers
        ],
        "passes": [
            {
                "name": r.name,
                "ir": r.ir,
                "modified": r.modified,
                "seconds": round(r.seconds, 4),
                "verify_seconds": round(r.verify_seconds, 4),
                "nodes_after": r.nodes_after,
                "report": r.report,
            }
            for _, r in steps
        ],
        "artifacts": sorted(
            str(p.relative_to(build_dir)) for p in artifacts.rglob("*") if p.is_file()
        )
        if artifacts.is_dir()
        else [],
    }
    entry.update(_pass_sections(steps, ReportContext(artifacts, build_dir), registry))
    # Passes name the files they wrote by absolute path inside the temporary build directory;
    # the report names them relative to DIR, where they end up.
    return retarget(entry, f"{build_dir}{os.sep}", "")


def _pass_sections(steps, context: ReportContext, registry) -> dict:
    """What the passes of this pipeline add to the entry (Pass.set_report_section). A pass is
    asked once, with the stats of all its runs on every IR (fx(bn_fold) and onnx(bn_fold) are
    one pass), by the class of its first run."""
    registry = _registry(registry)
    runs: dict[str, tuple[type, list[dict]]] = {}
    for name, record in steps:
        cls = _pass_class(registry, record.name, record.ir)
        runs.setdefault(name, (cls, []))[1].append(record.stats)
    sections: dict = {}
    for cls, stats in runs.values():
        sections.update(cls.set_report_section(stats, context))
    return sections


def with_all_sections(entries: list[dict]) -> list[dict]:
    """Every entry holds every pass section any file of the set has (null where its pipeline
    did not run that pass), so report.json has one shape per set."""
    keys = [k for e in entries for k in e if k not in _BASE_KEYS]
    keys = list(dict.fromkeys(keys))
    return [{**{k: None for k in keys}, **e} for e in entries]


def retarget(value, old: str, new: str):
    """`value` (strings, lists, dicts) with the path prefix `old` replaced by `new`."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [retarget(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: retarget(v, old, new) for k, v in value.items()}
    return value


def report_json(entries: list[dict], config_source: str | None, seconds: float, time: dict) -> str:
    from bevcc.version import __version__

    data = {
        "schema": SCHEMA,
        "bevcc_version": __version__,
        "config": config_source,
        "engine_script": SCRIPT_NAME,
        "seconds": round(seconds, 3),
        "time": time,
        "files": entries,
    }
    return json.dumps(data, indent=2) + "\n"


# ---- report.md --------------------------------------------------------------------------------
def _qdq(entry: dict) -> str:
    """Q/DQ node pairs; '-' for a libspconv file, whose INT8 is in attributes, not Q/DQ."""
    if entry["precision"] == "libspconv":
        return "-"
    q, dq = entry["qdq"]["quantize_linear"], entry["qdq"]["dequantize_linear"]
    return str(q) if q == dq else f"{q} Q / {dq} DQ"


def _int8_layers(entry: dict) -> str:
    lint = entry["lint"]
    return f"{lint['int8_layers']} of {lint['total_layers']}"


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def _shares(entry: dict) -> str:
    """INT8 / FP16 / FP32 shares of the file's MACs."""
    return " / ".join(_percent(entry["macs"][f"{p}_share"]) for p in ("int8", "fp16", "fp32"))


def _kept(entry: dict) -> str:
    """The units a pass decided to keep float (the `kept_float` section), '-' when none decided."""
    kept = entry.get("kept_float")
    if kept is None:
        return "-"
    return ", ".join(kept) or "none"


def report_markdown(
    entries: list[dict], config_source: str | None, time: dict, registry=None
) -> str:
    lines = ["# Deployable set", ""]
    if config_source:
        lines += [f"Built from `{config_source}`. Engines: `./{SCRIPT_NAME}`.", ""]
    lines += [f"Compiled in {sum(time.values()):.1f} s: {time_text(time)}.", ""]
    lines += [
        (
            "| file | precision | INT8 layers | Q/DQ pairs | lint errors | predicted Reformats | "
            "MACs INT8 / FP16 / FP32 | kept float |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        reformats = e["lint"]["predicted_reformats"]
        lines.append(
            f"| {e['file']} | {e['precision']} | {_int8_layers(e)} | {_qdq(e)} | "
            f"{e['lint']['errors']} | {'-' if reformats is None else reformats} | "
            f"{_shares(e)} | {_kept(e)} |"
        )
    lines += [
        "",
        (
            "INT8 layers: the compute layers (Conv, ConvTranspose, Gemm, MatMul, sparse convs) "
            "the file runs in INT8. MACs: the precision each layer runs in as the set builds "
            "the file (the rule: docs/deploy_sets.md). Layers are named by their PyTorch module "
            "path, with the ONNX node name beside it."
        ),
    ]
    warned = [e for e in entries if e["lint"].get("warnings")]
    if warned:  # the build of these engines will fail: said before the sections
        counts = ", ".join(f"`{e['file']}` {len(e['lint']['warnings'])}" for e in warned)
        lines += ["", f"TensorRT limit warnings: {counts} (see its section)."]
    for e in entries:
        lines += ["", *_section(e, registry)]
    return "\n".join(lines) + "\n"


def _section(e: dict, registry) -> list[str]:
    from bevcc.lint.report import macs_text

    lint, macs = e["lint"], e["macs"]
    lines = [
        f"## {e['name']}",
        "",
        f"- file: `{e['file']}` ({e['precision']}; "
        + (f"engine `{e['engine']}`)" if e["engine"] else "loaded by libspconv)"),
        f"- input: `{e['input']}`" + (f", calib: `{e['calib']}`" if e["calib"] else ""),
        f"- pipeline: `{e['pipeline']}` ({e['seconds']:.1f} s)",
        f"- time: {time_text(e['time'])}",
    ]
    if e["precision"] == "libspconv":
        lines.append(
            f'- INT8 layers: {_int8_layers(e)} sparse convs have `precision="int8"` (a '
            "libspconv file holds no Q/DQ nodes; the others run FP16)"
        )
    else:
        lines.append(
            f"- Q/DQ: {e['qdq']['quantize_linear']} QuantizeLinear, "
            f"{e['qdq']['dequantize_linear']} DequantizeLinear; INT8 layers {_int8_layers(e)}"
        )
    dense = " dense-equivalent" if e["precision"] == "libspconv" else ""
    lines += [
        (
            f"- MACs: INT8 {_percent(macs['int8_share'])}, FP16 {_percent(macs['fp16_share'])}, "
            f"FP32 {_percent(macs['fp32_share'])} of {macs_text(macs['total'])}{dense}"
        ),
        f"- lint ({lint['kind']}): {lint['errors']} error(s)"
        + (
            ""
            if lint["predicted_reformats"] is None
            else f", {lint['predicted_reformats']} predicted Reformat(s)"
        )
        + (f", {len(lint['warnings'])} warning(s)" if lint.get("warnings") else ""),
    ]
    lines += [f"  - {problem}" for problem in lint["problems"]]
    lines += [f"  - warning: {warning}" for warning in lint.get("warnings", [])]
    lines += _pass_lines(e, registry)
    lines += _float_layer_lines(e)
    lines += ["", "| pass | seconds | verify s | modified | report |", "|---|---|---|---|---|"]
    for p in e["passes"]:
        report = "<br>".join(line.strip().replace("|", "\\|") for line in p["report"])
        lines.append(
            f"| `{p['name']}` | {p['seconds']:.3f} | {p['verify_seconds']:.3f} | "
            f"{'yes' if p['modified'] else 'no'} | {report} |"
        )
    return lines


def _float_layer_lines(e: dict) -> list[str]:
    """The layers of an INT8 file that are not INT8, and of an FP16 file those kept FP32, each
    with its module path, ONNX name, MACs, the precision it runs in and why. (In an fp32 file
    every layer is.)"""
    from bevcc.lint.report import macs_text

    if e["precision"] in ("int8", "libspconv"):
        floats = [layer for layer in e["layers"] if layer["precision"] != "int8"]
        title = f"Layers not in INT8 ({len(floats)} of {len(e['layers'])}):"
    elif e["precision"] == "fp16":
        floats = [layer for layer in e["layers"] if layer["precision"] == "fp32"]
        title = f"Layers kept FP32 ({len(floats)} of {len(e['layers'])}):"
    else:
        return []
    if not floats:
        return []
    unit_of = {
        name: unit for unit, names in (e.get("kept_float_layers") or {}).items() for name in names
    }
    lines = [
        "",
        title,
        "",
        "| layer (module) | ONNX node | MACs | runs in | why |",
        "|---|---|---|---|---|",
    ]
    for layer in floats:
        unit = unit_of.get(layer["module"]) or unit_of.get(layer["onnx"])
        why = f"kept float (unit {unit})" if unit else "not quantized by the pipeline"
        if layer.get("fp32_reason"):  # strong_typing kept it FP32 as well: say why
            why = (
                f"{why}; FP32: {layer['fp32_reason']}"
                if e["precision"] != "fp16"
                else (f"FP32: {layer['fp32_reason']}")
            )
        lines.append(
            f"| {layer['module'] or '-'} | `{layer['onnx']}` | {macs_text(layer['macs'])} | "
            f"{layer['precision'].upper()} | {why} |"
        )
    return lines


def _pass_lines(e: dict, registry) -> list[str]:
    """The passes' own report.md lines (Pass.set_report_lines), in pipeline order."""
    registry = _registry(registry)
    lines: list[str] = []
    seen = set()
    for p in e["passes"]:
        cls = _pass_class(registry, p["name"], p["ir"])
        if cls.name not in seen:  # one pass, however many IRs it ran on
            seen.add(cls.name)
            lines += cls.set_report_lines(e)
    return lines


def _registry(registry):
    """The registry the set compiled with (bevcc.compile_set(registry=...)), else the plugins'."""
    if registry is not None:
        return registry
    from bevcc.plugins import get_registry

    return get_registry()


def _pass_class(registry, label: str, ir: str):
    """The pass class of a step record's label: `fx(name{options})` for a pass, `name{options}`
    for a conversion."""
    if "(" in label:
        word = label.split("(", 1)[1].rstrip(")")
        return registry.lookup(word.split("{", 1)[0], ir, conversion=False)
    word = label.split("{", 1)[0]  # a conversion's record holds the IR it produced
    return next(e.obj for e in registry.entries() if e.name == word and e.obj.is_conversion())
