"""The pass manager: builds a pipeline from text and runs it, with instrumentations around every
pass (bevcc/pm/instrument.py): the checks (verify, the `modified` claim), then the others."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from bevcc import progress
from bevcc.errors import BevccError, PassError, UsageError
from bevcc.ir.base import IR
from bevcc.pm.checks import default_checks
from bevcc.pm.instrument import Instrumentation, PrintIRAfter, Timing
from bevcc.pm.options import build_options
from bevcc.pm.pass_base import Pass, PassContext, PassResult
from bevcc.pm.pipeline import Pipeline, StepSpec, parse_pipeline, placed_steps
from bevcc.registry import IR_KINDS


@dataclass
class Step:
    """A pass instance bound to its place in the pipeline."""

    spec: StepSpec
    pass_: Pass
    index: int = 0  # position among the pipeline's steps
    ran_before: tuple[str, ...] = ()  # names of the steps before this one, for error messages

    @property
    def is_conversion(self) -> bool:
        return self.pass_.is_conversion()

    @property
    def label(self) -> str:
        return self.spec.text() if self.is_conversion else f"{self.pass_.ir}({self.spec.text()})"


@dataclass
class StepRecord:
    name: str
    ir: str
    modified: bool
    seconds: float
    verify_seconds: float
    nodes_after: int
    stats: dict[str, Any] = field(default_factory=dict)
    report: list[str] = field(default_factory=list)  # the pass's human summary of `stats`
    # the whole step: the pass, its checks and the instrumentations around it (>= seconds +
    # verify_seconds), so a compile's time is accounted for to the second
    wall_seconds: float = 0.0
    conversion: bool = False  # a conversion between IRs (export), not a pass on one IR


@dataclass
class RunResult:
    ir: IR
    records: list[StepRecord]


class PassManager:
    """Runs a pipeline of passes over an IR.

    After every pass, by default: the IR is verified, and the pass's `modified` claim is checked
    against the IR's fingerprint (both linear in graph size). `instrumentations` run after those
    checks, between --print-ir-after's printer and the --timing table.
    """

    def __init__(
        self,
        pipeline: str | Pipeline,
        registry,
        input_kind: str,
        *,
        context: PassContext | None = None,
        verify_each: bool = True,
        check_modified: bool = True,
        print_ir_after: str | None = None,
        timing: bool = False,
        stream: TextIO | None = None,
        instrumentations: list[Instrumentation] | tuple = (),
    ):
        self.pipeline = parse_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
        self.context = context or PassContext(registry=registry)
        self.steps = build_steps(self.pipeline, registry, input_kind, self.context)
        self.input_kind = input_kind
        self.stream = stream or sys.stderr
        self.checks = default_checks(verify_each, check_modified)
        printer = (
            [PrintIRAfter.parse(print_ir_after, self.pipeline, self.stream)]
            if print_ir_after
            else []
        )
        self.instrumentations = [
            *printer,
            *instrumentations,
            *([Timing(self.stream)] if timing else []),
        ]

    @property
    def output_kind(self) -> str:
        return self.steps[-1].pass_.output_kind() if self.steps else self.input_kind

    def run(self, ir: IR) -> RunResult:
        if ir.kind != self.input_kind:
            raise UsageError(f"pipeline starts on {self.input_kind} but the input is {ir.kind}")
        records: list[StepRecord] = []
        for step in self.steps:
            start = time.perf_counter()
            with progress.step(step.label):
                ir, record = self._run_step(step, ir)
            record.wall_seconds = time.perf_counter() - start
            records.append(record)
            self.context.history.append(step.spec.name)
        for instrumentation in self.instrumentations:
            instrumentation.after_pipeline(ir, records)
        return RunResult(ir, records)

    def _run_step(self, step: Step, ir: IR) -> tuple[IR, StepRecord]:
        hooks = [*self.checks, *self.instrumentations]
        for hook in hooks:
            hook.before_pass(step, ir)
        result = None
        try:
            start = time.perf_counter()
            result = _call(step, ir)
            seconds = time.perf_counter() - start
            _check_returned(step, result)
            start = time.perf_counter()
            for check in self.checks:
                check.after_pass(step, result.ir, result)
            verify_seconds = time.perf_counter() - start
        except PassError as error:
            returned = isinstance(result, PassResult)
            for hook in hooks:
                hook.after_failure(step, result.ir if returned else ir, error, returned)
            raise
        for instrumentation in self.instrumentations:
            instrumentation.after_pass(step, result.ir, result)
        p = step.pass_
        return result.ir, StepRecord(
            step.label,
            p.output_kind(),
            result.modified or step.is_conversion,
            seconds,
            verify_seconds,
            result.ir.node_count(),
            dict(result.stats),
            p.report(result.stats),
            conversion=step.is_conversion,
        )


def _where(step: Step) -> str:
    return f"pass '{step.pass_.name}' failed after [{', '.join(step.ran_before)}]"


def _call(step: Step, ir: IR):
    """Run the pass; anything it raises becomes one PassError naming its place."""
    try:
        return step.pass_(ir)
    except BevccError as exc:
        wrapped = PassError(f"{_where(step)}: {exc}")
        wrapped.exit_code = exc.exit_code  # a usage error found by a pass is still one
        raise wrapped from exc
    except Exception as exc:
        raise PassError(f"{_where(step)}: {type(exc).__name__}: {_first_line(exc)}") from exc


def _check_returned(step: Step, result) -> None:
    if not isinstance(result, PassResult):
        raise PassError(f"{_where(step)}: it returned {type(result).__name__}, not a PassResult")
    expected = step.pass_.output_kind()
    if result.ir.kind != expected:
        raise PassError(f"{_where(step)}: it returned {result.ir.kind} IR, expected {expected}")


def _first_line(exc: BaseException) -> str:
    """torch.fx appends 'While executing ...' notes to exceptions; errors stay one line."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__


def build_steps(pipeline: Pipeline, registry, input_kind: str, context: PassContext) -> list[Step]:
    """Resolve every word and option, and check the IR flow, before any pass runs."""
    steps: list[Step] = []

    def add(spec: StepSpec, cls) -> None:
        before = tuple(s.spec.name for s in steps)
        steps.append(Step(spec, cls(build_options(cls, spec.options), context), len(steps), before))

    for spec, cls, _ in placed_steps(pipeline, input_kind, IR_KINDS, registry.lookup):
        add(spec, cls)
    return steps
