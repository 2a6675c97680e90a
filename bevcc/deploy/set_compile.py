"""A set compile: several deployable files from one config, written together or not at all.

`bevcc compile --config SET.toml -o DIR` (a config with `[[files]]` tables) compiles each entry
with `bevcc.compile` into a temporary sibling of DIR, writes report.json / report.md and
build_trt_engines.sh there, and only then replaces DIR (docs/deploy_sets.md).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from bevcc import progress
from bevcc.atomic import atomic_directory, current_umask
from bevcc.compiler import TIME_KEYS, CompileResult, compile
from bevcc.config import CompileConfig, FileSpec, check_files, load_config
from bevcc.deploy.report import (
    SCHEMA,
    file_entry,
    report_json,
    report_markdown,
    reports_dir,
    retarget,
    with_all_sections,
)
from bevcc.deploy.time_accounting import file_time, set_time
from bevcc.deploy.trtexec_script import SCRIPT_NAME, trtexec_script
from bevcc.device import resolve_device
from bevcc.errors import BevccError, UsageError
from bevcc.frontend import input_kind, start_kind
from bevcc.loading import is_callable_ref
from bevcc.pm.manager import build_steps
from bevcc.pm.pass_base import PassContext
from bevcc.pm.pipeline import IRGroup, Pipeline, parse_pipeline
from bevcc.pm.reproducer import Reproducer, check_replaceable

FP16_DIR = "fp16"  # the FP16 set's sub-directory of DIR


@dataclass
class SetFile:
    spec: FileSpec
    result: CompileResult  # its `output` is the final path, DIR/<name>.onnx
    path: Path
    seconds: float
    report: dict  # this file's entry in report.json


@dataclass
class SetResult:
    output: Path  # DIR
    files: list[SetFile]
    report_json: Path
    report_md: Path
    engine_script: Path
    # the whole compile_set call by phase (bevcc.compiler.TIME_KEYS), both sets; checking the
    # config and loading the plugins before the first file count as load
    time: dict[str, float]

    @property
    def seconds(self) -> float:
        return sum(self.time.values())

    def __getitem__(self, name: str) -> SetFile:
        for file in self.files:
            if file.spec.name == name:
                return file
        raise KeyError(name)


def compile_set(
    config: str | os.PathLike | CompileConfig,
    output: str | os.PathLike | None = None,
    *,
    registry=None,
    verify_each: bool = True,
    timing: bool = False,
    print_ir_after: str | None = None,
    stream: TextIO | None = None,
    on_pipeline: Callable[[str], None] | None = None,
    print_ir_after_failure: bool = False,
    reproducer: str | os.PathLike | None = None,
    device: str | None = None,
) -> SetResult:
    """Compile every `[[files]]` entry of `config` (a TOML path or a CompileConfig) into the
    directory `output` (default: the config's `output`).

    Every entry's names and options are checked before any model loads. Progress goes to
    `stream` (default stderr). On any failure DIR is left exactly as it was.
    `print_ir_after_failure` and `reproducer` are bevcc.compile's, for whichever file fails:
    its reproducer is written to `reproducer`/<file name>/ (fp16/<file name>/ for the FP16 set).
    `device`: where every file's passes run the model (bevcc.compile's); default: the config's
    `device`, else auto.
    """
    started = time.perf_counter()
    if not isinstance(config, CompileConfig):
        config = load_config(config)
    where = f"config {config.source}" if config.source else "compile_set"
    check_files(config.files, where)
    if output is None:
        output = config.output
    if output is None:
        raise UsageError(f"{where}: no output directory; give -o DIR (or `output` in the config)")
    # before any plugin's deferred part or model loads: a missing GPU fails at once
    device = resolve_device(device if device is not None else config.device)
    if registry is None:
        from bevcc.plugins import get_registry

        registry = get_registry()
    target = Path(output)
    pipelines = [
        _checked_pipeline(spec, registry, where, i) for i, spec in enumerate(config.files, 1)
    ]
    _check_replaceable(target, config)
    if reproducer is not None:
        _check_reproducer(Path(reproducer), target)
    stream = stream or sys.stderr
    options = {
        "registry": registry,
        "verify_each": verify_each,
        "timing": timing,
        "print_ir_after": print_ir_after,
        "stream": stream,
        "on_pipeline": on_pipeline,
        "print_ir_after_failure": print_ir_after_failure,
        "reproducer": reproducer,
        "device": device,
    }
    float_specs = [float_spec(spec, registry) for spec in config.files] if config.fp16_set else []
    setup = time.perf_counter() - started
    with atomic_directory(target) as build_dir:
        done, set_times = _build(config.files, pipelines, build_dir, target, config, **options)
        if float_specs:
            print(
                f"FP16 set ({FP16_DIR}/): the same files without their quantization passes",
                file=stream,
                flush=True,
            )
            _, float_times = _build(
                float_specs,
                [s.pipeline for s in float_specs],
                build_dir / FP16_DIR,
                target / FP16_DIR,
                config,
                group=FP16_DIR,
                **options,
            )
            set_times = {k: set_times[k] + float_times[k] for k in TIME_KEYS}
    total = {**set_times, "load": set_times["load"] + setup}
    total["other"] += max(time.perf_counter() - started - sum(total.values()), 0.0)
    files = [
        SetFile(
            spec, _moved(result, build_dir, target), target / result.output.name, seconds, entry
        )
        for spec, result, seconds, entry in done
    ]
    return SetResult(
        target, files, target / "report.json", target / "report.md", target / SCRIPT_NAME, total
    )


def float_spec(spec: FileSpec, registry) -> FileSpec:
    """The entry for the FP16 set: its pipeline without the passes that quantize (weights still
    folded), built as FP16; a libspconv file stays libspconv, with every conv in FP16."""
    pipeline = parse_pipeline(spec.pipeline)
    kept = []
    for element in pipeline.elements:
        if isinstance(element, IRGroup):
            steps = [
                s
                for s in element.steps
                if not registry.lookup(s.name, element.ir, conversion=False).quantizes
            ]
            if steps:
                kept.append(IRGroup(element.ir, steps))
        else:
            kept.append(element)
    precision = "libspconv" if spec.precision == "libspconv" else "fp16"
    return replace(spec, pipeline=Pipeline(kept).text(), precision=precision)


def _build(
    specs,
    pipelines,
    build_dir: Path,
    target: Path,
    config: CompileConfig,
    group: str = "",
    **options,
) -> tuple[list[tuple[FileSpec, CompileResult, float, dict]], dict]:
    """Compile `specs` into `build_dir` (later renamed to `target`) with the report and script;
    `group` is their sub-directory of the set ("" or fp16), for reproducer paths. Returns the
    files and the set's time by phase."""
    stream = options["stream"]
    started = time.perf_counter()
    build_dir.mkdir(exist_ok=True)
    done, entries = [], []
    for index, (spec, pipeline) in enumerate(zip(specs, pipelines, strict=True), 1):
        print(f"[{index}/{len(specs)}] {spec.name}: {pipeline}", file=stream, flush=True)
        label = f"file '{spec.name}' ({index}/{len(specs)})"  # for errors
        start = time.perf_counter()
        name = f"{group}/{spec.name}" if group else spec.name
        with progress.step(name, index, len(specs)):
            result = _compile_one(spec, pipeline, build_dir, label, name, **options)
            lint_start = time.perf_counter()
            with progress.step("lint"):  # the written file read back for its report entry
                entry = file_entry(spec, result, build_dir, lint_start - start, options["registry"])
                _check_precision(spec, entry, label)
        end = time.perf_counter()
        seconds = end - start
        entry["seconds"] = round(seconds, 3)
        entry["time"] = file_time(result.time, end - lint_start, seconds)
        entries.append(entry)
        done.append((spec, result, seconds, entry))
        print(f"wrote {target / result.output.name} ({seconds:.1f} s)", file=stream, flush=True)
    with progress.step("report"):
        for entry, full in zip(entries, with_all_sections(entries), strict=True):
            entry.clear()
            entry.update(full)  # `done` holds the same dicts
        seconds = time.perf_counter() - started
        times = set_time([e["time"] for e in entries], seconds)
        (build_dir / "report.json").write_text(report_json(entries, config.source, seconds, times))
        (build_dir / "report.md").write_text(
            report_markdown(entries, config.source, times, options["registry"])
        )
        script = build_dir / SCRIPT_NAME
        script.write_text(trtexec_script(specs, _script_header(config)))
        # executable by whoever the umask lets read it (0755 under 022, 0700 under 077)
        script.chmod(0o777 & ~current_umask())
    times = {**times, "other": times["other"] + time.perf_counter() - started - seconds}
    return done, times


def _checked_pipeline(spec: FileSpec, registry, where: str, index: int) -> str:
    """Resolve the entry's passes and options now, so a typo in the last entry fails before the
    first one spends minutes compiling; returns the canonical pipeline text."""
    entry = f"{where}: [[files]] entry {index} ('{spec.name}')"
    try:
        pipeline = parse_pipeline(spec.pipeline)
        start = start_kind(input_kind(spec.input), pipeline)
        steps = build_steps(pipeline, registry, start, PassContext(registry=registry))
    except BevccError as exc:
        raise _prefixed(exc, entry) from exc
    kind = steps[-1].pass_.output_kind() if steps else start
    if kind == "fx":
        ends = " or ".join(
            f"{name} ({what})"
            for what, names in (
                ("TensorRT", _conversions_to(registry, "onnx")),
                ("libspconv", _conversions_to(registry, "libspconv")),
            )
            for name in names
        )
        raise UsageError(
            f"{entry}: the pipeline ends on fx IR, but a deployable file is ONNX; "
            f"end it with {ends or 'a conversion to onnx'}"
        )
    if (kind == "libspconv") != (spec.precision == "libspconv"):
        to_libspconv = " or ".join(_conversions_to(registry, "libspconv")) or "a conversion"
        fix = (
            'precision = "libspconv"'
            if kind == "libspconv"
            else f"a pipeline ending in {to_libspconv}, or another precision"
        )
        raise UsageError(
            f"{entry}: precision '{spec.precision}' does not fit a pipeline "
            f"ending on {kind} IR; use {fix}"
        )
    if kind == "onnx":
        _check_typing_steps(spec, [s.pass_ for s in steps], registry, entry)
    return pipeline.text()


def _check_typing_steps(spec: FileSpec, passes: list, registry, entry: str) -> None:
    """TensorRT 11 builds each layer in its tensors' types (10 too, with --stronglyTyped, as the
    build script asks): a file meant to run INT8/FP16 must be typed fp16 by a pass, and an FP32
    file must not be."""
    typing = [p.name for p in passes if p.types]
    if spec.precision in ("int8", "fp16") and not typing:
        names = sorted({e.name for e in registry.entries() if getattr(e.obj, "types", False)})
        raise UsageError(
            f"{entry}: precision '{spec.precision}' needs a file typed fp16 (TensorRT 11 builds "
            "float32 tensors in FP32 and takes no --fp16), but no pass in the pipeline types it; "
            f"add onnx({' or '.join(names) or 'a typing pass'}) after the last pass that "
            'changes the graph, or set precision = "fp32"'
        )
    if spec.precision == "fp32" and typing:
        raise UsageError(
            f"{entry}: precision 'fp32', but {typing[0]} types the file for fp16; drop it from "
            'the pipeline or set precision = "fp16"'
        )


def _check_replaceable(target: Path, config: CompileConfig) -> None:
    """DIR is replaced whole, so refuse a DIR holding anything but an earlier set's output, and
    inputs that live inside it (replacing DIR would delete them)."""
    if target.exists() and not target.is_dir():
        raise UsageError(
            f"output {target} is a file; a set compile writes a directory: choose another -o"
        )
    root = target.resolve()
    sources = [config.source] + [v for s in config.files for v in (s.input, s.calib)]
    for value in sources:
        path = _file_of(value)
        if path is not None and path.resolve().is_relative_to(root):
            raise UsageError(
                f"{value} lies inside the output directory {target}, which a set "
                "compile replaces whole; write the set to another directory"
            )
    if target.is_dir() and any(target.iterdir()) and not _is_set_output(target):
        raise UsageError(
            f"output {target} exists and is not a set compile's output (no "
            f"report.json with schema {SCHEMA}); it would be replaced whole: "
            "choose a new directory or empty it"
        )


def _is_set_output(directory: Path) -> bool:
    try:
        return json.loads((directory / "report.json").read_text()).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def _file_of(value: str | None) -> Path | None:
    if not value:
        return None
    if is_callable_ref(value):
        location = value.rpartition(":")[0]
        return Path(location) if location.endswith(".py") else None
    return Path(value) if Path(value).exists() else None


def _check_reproducer(directory: Path, target: Path) -> None:
    """Before any file compiles: DIR must be replaceable, and outside the set's directory (which
    a failed set leaves as it was and a later one replaces whole)."""
    check_replaceable(directory)
    if directory.resolve().is_relative_to(target.resolve()):
        raise UsageError(
            f"--reproducer {directory} lies inside the output directory {target}; "
            "name a directory outside it"
        )


def _compile_one(
    spec: FileSpec,
    pipeline: str,
    build_dir: Path,
    label: str,
    name: str,
    *,
    reproducer=None,
    **options,
) -> CompileResult:
    artifacts = reports_dir(build_dir, spec)
    artifacts.mkdir(parents=True)
    hooks = []
    if reproducer is not None:  # bevcc.compile's own, with the file's sub-directory of DIR
        hooks.append(
            Reproducer(
                reproducer,
                parse_pipeline(pipeline),
                calib=spec.calib,
                verify_each=options["verify_each"],
                stream=options["stream"],
                subdirectory=name,
                device=options["device"],
            )
        )
    try:
        result = compile(
            spec.input,
            pipeline=pipeline,
            calib=spec.calib,
            output=build_dir / f"{spec.name}.onnx",
            artifacts_dir=artifacts,
            instrumentations=hooks,
            **options,
        )
    except BevccError as exc:
        raise _prefixed(exc, label) from exc  # one line says which file of the set failed
    if not any(artifacts.iterdir()):
        artifacts.rmdir()  # no pass wrote a report; keep reports/ to files that have one
        if not any(artifacts.parent.iterdir()):
            artifacts.parent.rmdir()
    return result


def _prefixed(exc: BevccError, prefix: str) -> BevccError:
    """The same error (class and exit code) with `prefix: ` in front of its message."""
    try:
        wrapped = type(exc)(f"{prefix}: {exc}")
    except TypeError:  # a plugin's error class with its own constructor
        wrapped = BevccError(f"{prefix}: {exc}")
    wrapped.exit_code = exc.exit_code
    return wrapped


def _conversions_to(registry, kind: str) -> list[str]:
    """Names of the registered conversions from fx that produce `kind` (for error hints)."""
    return sorted(
        e.name
        for e in registry.entries()
        if e.obj.ir == "fx" and e.obj.is_conversion() and e.obj.output_kind() == kind
    )


def _quantizing_passes(registry) -> str:
    return ", ".join(sorted({e.name for e in registry.entries() if e.obj.quantizes})) or "none"


def _check_precision(spec: FileSpec, entry: dict, label: str) -> None:
    """The file must hold what its precision says: INT8 only through Q/DQ (TensorRT 11 has no
    implicit quantization), none in an FP16/FP32 file, and an INT8/FP16 file typed fp16 (the
    build has no precision flags, so an untyped file's float layers would build FP32)."""
    pairs = entry["qdq"]["quantize_linear"] + entry["qdq"]["dequantize_linear"]
    if spec.precision == "int8" and pairs == 0:
        from bevcc.plugins import get_registry

        raise UsageError(
            f"{label}: precision int8, but the file has no Q/DQ nodes; add a "
            f"quantizing pass ({_quantizing_passes(get_registry())}) to the "
            'pipeline or set precision = "fp16"'
        )
    if spec.precision in ("fp16", "fp32") and pairs:
        raise UsageError(
            f"{label}: precision {spec.precision}, but the file has Q/DQ nodes "
            f"({entry['qdq']['quantize_linear']} QuantizeLinear); set precision = "
            '"int8" or drop the quantizing passes from the pipeline'
        )
    declared = entry["lint"]["float_precision"]
    if spec.precision in ("int8", "fp16") and declared in (None, "fp32"):
        raise UsageError(
            f"{label}: precision {spec.precision}, but the file is not typed fp16 (its typing "
            f"pass declared {declared or 'nothing'}); TensorRT 11 would build its float layers "
            "in FP32"
        )


def _moved(result: CompileResult, build_dir: Path, target: Path) -> CompileResult:
    """The result as the caller sees it after the rename: paths inside the build directory now
    live in DIR."""
    old, new = f"{build_dir}{os.sep}", f"{target}{os.sep}"
    records = [
        replace(r, stats=retarget(r.stats, old, new), report=retarget(r.report, old, new))
        for r in result.records
    ]
    return replace(result, records=records, output=target / result.output.name)


def _script_header(config: CompileConfig) -> str:
    from bevcc.version import __version__

    source = f" from {config.source}" if config.source else ""
    return f"Written by bevcc {__version__}{source}."
