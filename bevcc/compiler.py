"""bevcc.compile: input -> IR -> pipeline of passes -> output file, as the CLI does it."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bevcc import progress
from bevcc.data import CalibData
from bevcc.device import resolve_device
from bevcc.errors import UsageError
from bevcc.frontend import build_model, input_kind, start_kind, to_ir
from bevcc.ir.base import IR
from bevcc.pipeline_check import check_pipeline
from bevcc.pm.instrument import Instrumentation, PrintIRAfterFailure
from bevcc.pm.manager import PassManager, StepRecord
from bevcc.pm.pass_base import PassContext
from bevcc.pm.pipeline import parse_pipeline
from bevcc.pm.reproducer import Reproducer

_SUFFIXES = {"fx": ".pt", "onnx": ".onnx", "libspconv": ".onnx"}
# Where a compile's time goes (CompileResult.time), every second of it:
#   load    the plugins' deferred parts and the pipeline's pass modules imported, the model
#           built (the user's callable: its weights, its data) or its file read
#   trace   the frontend: FX tracing and specialization, or an ONNX ModelProto taken in
#   passes  the pipeline's passes, with the checks and instrumentations around each
#   export  the conversions between IRs (export, export_libspconv), with theirs
#   write   the run's garbage collected, the output saved
#   other   the rest (parsing and checking the pipeline): about 0
TIME_KEYS = ("load", "trace", "passes", "export", "write", "other")


@dataclass
class CompileResult:
    ir: IR
    records: list[StepRecord]
    pipeline: str
    output: Path | None
    time: dict[str, float] = field(default_factory=dict)  # seconds by TIME_KEYS

    @property
    def seconds(self) -> float:
        """Wall time of the compile: the sum of `time`."""
        return sum(self.time.values())


def compile(
    model,
    pipeline: str | None = None,
    calib=None,
    output=None,
    *,
    example_inputs=None,
    registry=None,
    verify_each: bool = True,
    check_modified: bool | None = None,
    print_ir_after: str | None = None,
    timing: bool = False,
    stream: TextIO | None = None,
    on_pipeline: Callable[[str], None] | None = None,
    quant_config=None,
    artifacts_dir=None,
    calib_batch_size: int | None = None,
    instrumentations: list[Instrumentation] | tuple = (),
    print_ir_after_failure: bool = False,
    reproducer=None,
    device: str | None = None,
) -> CompileResult:
    """Compile `model` with `pipeline` and, if `output` is given, write the result there.

    `model`: a path to .onnx, a `file.py:callable` / `package.module:callable` reference or a
    registered model name, an nn.Module, (module, example_inputs), an onnx.ModelProto, or an IR.
    `calib`: an .npz, a directory of .npz, a callable reference, or an iterable of batches.
    Every name and option is checked before the model is loaded; nothing is written on failure.
    `check_modified` (default: same as `verify_each`) checks each pass's `modified` claim.
    `quant_config`: a QuantConfig or dict for qdq_insert (its `config=FILE` option wins).
    `artifacts_dir`: where passes write their reports (sensitivity_disable's tables, ...) and,
    when given, their records of what they decided (Pass.replay_options reads them); default:
    the output's directory (reports only), none without an output.
    `calib_batch_size`: samples per batch for a model whose batch is free; a model with a static
    batch gets its calibration samples in batches of that size whatever this says.
    `instrumentations`: objects with before/after/failure hooks around every pass
    (bevcc.pm.instrument.Instrumentation), run after the manager's checks, in the order given.
    `print_ir_after_failure`: print the IR a failing pass left behind to `stream`.
    `reproducer`: a directory that gets, if a pass fails, the IR before it, the pipeline from it
    on and the `bevcc compile` command that reruns it (bevcc/pm/reproducer.py).
    `device`: where passes run the model (calibration, sensitivity runs): cpu, cuda, cuda:N or
    auto (the default: cuda where torch sees a GPU, else cpu); checked before the model loads
    (a ValueError, bevcc.device.DeviceError, for a malformed or absent one). The model is back
    on the CPU after each pass and in the result (bevcc/device.py).
    The result's `time` is the compile's wall time by phase (TIME_KEYS); each phase, pass and
    long loop shows as progress (bevcc/progress.py).
    """
    started = time.perf_counter()
    times = dict.fromkeys(TIME_KEYS, 0.0)
    if registry is None:
        from bevcc.plugins import default_plugins

        # not get_registry(), which completes the registry first: the pipeline is checked
        # before anything heavy loads
        registry = default_plugins().registry
    model_kind = input_kind(model)
    # the default is a named pipeline a plugin registers (the built-ins: default-fx, default-onnx)
    text = pipeline if pipeline is not None else registry.pipeline(f"default-{model_kind}")
    calib_data = calib if isinstance(calib, CalibData) or calib is None else CalibData(calib)
    if calib_batch_size is not None:
        if calib_data is None:
            raise UsageError(
                "a calibration batch size was given without calibration data; add --calib DATA"
            )
        if calib_batch_size < 1:
            raise UsageError(f"calibration batch size {calib_batch_size} must be at least 1")
        calib_data.batch_size = calib_batch_size
    parsed = parse_pipeline(text)
    kind = start_kind(model_kind, parsed)  # a Python model under onnx(...) is captured as ONNX
    check_pipeline(parsed, registry, kind)  # before the manager imports any pass module
    with _phase("load", times):
        # before the model loads, so a missing GPU fails at once; it may import torch (0.4 s
        # in a set's first file), which is load time
        device = resolve_device(device)
        registry.resolve()  # what plugins deferred (leaf modules, models; torch) is needed from here
        context = PassContext(
            registry=registry, calib=calib_data, quant_config=quant_config, device=device
        )
        stream = stream or sys.stderr
        on_failure: list[Instrumentation] = []
        if print_ir_after_failure:
            on_failure.append(PrintIRAfterFailure(stream))
        if reproducer is not None:
            on_failure.append(
                Reproducer(
                    reproducer,
                    parsed,
                    calib=calib,
                    calib_batch_size=calib_batch_size,
                    verify_each=verify_each,
                    stream=stream,
                    device=device,
                )
            )
        manager = PassManager(
            parsed,
            registry,
            kind,
            context=context,
            verify_each=verify_each,
            check_modified=verify_each if check_modified is None else check_modified,
            print_ir_after=print_ir_after,
            timing=timing,
            stream=stream,
            instrumentations=[*on_failure, *instrumentations],
        )
        target = resolve_output(output, manager.output_kind) if output is not None else None
        if artifacts_dir is not None:
            context.artifacts_dir = Path(artifacts_dir)
            # a caller that names the directory (a set compile) keeps the passes' records of
            # what they decided there, for `bevcc evaluate` to replay; a plain output's
            # directory gets reports only
            context.records_decisions = True
        else:
            context.artifacts_dir = target.parent if target is not None else None
        if on_pipeline is not None:
            on_pipeline(manager.pipeline.text())
        built = build_model(model, registry)
    with _phase("trace", times):
        ir = to_ir(built, registry, calib_data, example_inputs, capture=kind)
    # A big graph is 10^5+ small Python objects that live for the whole run, and the cyclic
    # collector rescans them again and again (measured: a quarter of the time at 16k ONNX nodes,
    # and what made the run grow faster than the graph). Passes make little cyclic garbage, so
    # the collector pauses for the run and collects once after it: the young generations only,
    # where everything the run allocated still sits (nothing was promoted while the collector
    # paused). A full collection would rescan the caller's whole heap: 0.2 s per compile in a
    # test process or notebook that compiles many small models.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        result = manager.run(ir)
    finally:
        # collected before the collector runs again: enabled first, it would collect on the
        # next allocation by itself, outside any phase (0.35 s of "other" in the main job)
        with _phase("write", times):
            gc.collect(1)
        if was_enabled:
            gc.enable()
    with _phase("write", times):
        if target is not None:
            result.ir.save(target)
    for record in result.records:
        times["export" if record.conversion else "passes"] += record.wall_seconds
    times["other"] = max(time.perf_counter() - started - sum(times.values()), 0.0)
    return CompileResult(result.ir, result.records, manager.pipeline.text(), target, times)


@contextmanager
def _phase(name: str, times: dict[str, float]) -> Iterator[None]:
    """A phase of the compile: shown as progress, its seconds added to `times[name]`."""
    start = time.perf_counter()
    try:
        with progress.step(name):
            yield
    finally:
        times[name] += time.perf_counter() - start


def resolve_output(output, kind: str) -> Path:
    """A file path for the final IR: OUT itself, or OUT/model<suffix> when OUT is a directory."""
    path = Path(output)
    suffix = _SUFFIXES[kind]
    if path.is_dir() or not path.suffix:
        return path / f"model{suffix}"
    if path.suffix != suffix:
        raise UsageError(
            f"output {path} ends in {path.suffix}, but the pipeline ends on {kind} "
            f"IR, which is written as {suffix}; rename the output or add a conversion"
        )
    return path
