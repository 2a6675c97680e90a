"""The pass manager: builds a pipeline from text, runs it, verifies after every pass, instruments."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from bevcc.errors import BevccError, PassError, UsageError
from bevcc.ir.base import IR, IRInvalid
from bevcc.pm.instrument import print_ir, print_timing
from bevcc.pm.options import build_options
from bevcc.pm.pass_base import Pass, PassContext, PassResult
from bevcc.pm.pipeline import IRGroup, Pipeline, StepSpec, parse_pipeline
from bevcc.registry import IR_KINDS


@dataclass
class Step:
    """A pass instance bound to its place in the pipeline."""

    spec: StepSpec
    pass_: Pass

    @property
    def label(self) -> str:
        return self.spec.text() if self.pass_.is_conversion() else f"{self.pass_.ir}({self.spec.text()})"


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


@dataclass
class RunResult:
    ir: IR
    records: list[StepRecord]


class PassManager:
    """Runs a pipeline of passes over an IR.

    After every pass, by default: the IR is verified, and the pass's `modified` claim is checked
    against the IR's fingerprint. Both checks are linear in graph size.
    """

    def __init__(self, pipeline: str | Pipeline, registry, input_kind: str, *,
                 context: PassContext | None = None, verify_each: bool = True,
                 check_modified: bool = True, print_ir_after: str | None = None,
                 timing: bool = False, stream: TextIO | None = None):
        self.pipeline = parse_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
        self.context = context or PassContext(registry=registry)
        self.steps = build_steps(self.pipeline, registry, input_kind, self.context)
        self.input_kind = input_kind
        self.verify_each = verify_each
        self.check_modified = check_modified
        self.print_ir_after = _parse_print_ir_after(print_ir_after, self.pipeline)
        self.timing = timing
        self.stream = stream or sys.stderr

    @property
    def output_kind(self) -> str:
        return self.steps[-1].pass_.output_kind() if self.steps else self.input_kind

    def run(self, ir: IR) -> RunResult:
        if ir.kind != self.input_kind:
            raise UsageError(f"pipeline starts on {self.input_kind} but the input is {ir.kind}")
        records: list[StepRecord] = []
        done: list[str] = []
        self._known = None  # (ir, fingerprint) after the last checked pass
        for step in self.steps:
            ir, record = self._run_step(step, ir, done)
            records.append(record)
            done.append(step.spec.name)
            self.context.history.append(step.spec.name)
        if self.timing:
            print_timing(records, self.stream)
        return RunResult(ir, records)

    def _run_step(self, step: Step, ir: IR, done: list[str]) -> tuple[IR, StepRecord]:
        p = step.pass_
        where = f"pass '{p.name}' failed after [{', '.join(done)}]"
        before = None
        if self.check_modified and not p.is_conversion():
            # Nothing runs between two passes, so the last pass's "after" is this one's "before".
            known = self._known
            before = known[1] if known is not None and known[0] is ir else ir.fingerprint()
        start = time.perf_counter()
        try:
            result = p(ir)
        except BevccError as exc:
            wrapped = PassError(f"{where}: {exc}")
            wrapped.exit_code = exc.exit_code  # a usage error found by a pass is still one
            raise wrapped from exc
        except Exception as exc:
            raise PassError(f"{where}: {type(exc).__name__}: {_first_line(exc)}") from exc
        seconds = time.perf_counter() - start
        if not isinstance(result, PassResult):
            raise PassError(f"{where}: it returned {type(result).__name__}, not a PassResult")
        if result.ir.kind != p.output_kind():
            raise PassError(f"{where}: it returned {result.ir.kind} IR, expected {p.output_kind()}")
        start = time.perf_counter()
        after = None
        if self.verify_each:
            try:
                # one serialization serves both checks on IRs where that is the cost
                after = result.ir.verify_and_fingerprint() if before is not None else None
                if after is None:
                    result.ir.verify()
            except IRInvalid as exc:
                raise PassError(f"pass '{p.name}' broke the IR (after [{', '.join(done)}]): "
                                f"{exc}") from exc
        if before is not None:
            after = after if after is not None else result.ir.fingerprint()
            self._known = (result.ir, after)
            changed = after != before
            if changed != result.modified:
                truth = "changed" if changed else "did not change"
                raise PassError(f"pass '{p.name}' reported modified={result.modified} but the IR "
                                f"{truth} (after [{', '.join(done)}]); its PassResult must say "
                                "whether it changed the IR")
        verify_seconds = time.perf_counter() - start
        modified = result.modified or p.is_conversion()
        if self.print_ir_after.wants(p.name, modified):
            print_ir(step.label, result.ir, modified, self.stream)
        return result.ir, StepRecord(step.label, p.output_kind(), modified, seconds,
                                     verify_seconds, result.ir.node_count(), dict(result.stats),
                                     p.report(result.stats))


def _first_line(exc: BaseException) -> str:
    """torch.fx appends 'While executing ...' notes to exceptions; errors stay one line."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__


def build_steps(pipeline: Pipeline, registry, input_kind: str, context: PassContext) -> list[Step]:
    """Resolve every word and option, and check the IR flow, before any pass runs."""
    steps: list[Step] = []
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
                cls = registry.lookup(spec.name, kind, conversion=False)
                steps.append(Step(spec, cls(build_options(cls, spec.options), context)))
        else:
            cls = registry.lookup(element.name, kind, conversion=True)
            steps.append(Step(element, cls(build_options(cls, element.options), context)))
            kind = cls.output_kind()
    return steps


@dataclass
class _PrintIRAfter:
    mode: str | None = None  # None | all | change | names
    names: frozenset[str] = frozenset()

    def wants(self, name: str, modified: bool) -> bool:
        return (self.mode == "all" or (self.mode == "change" and modified)
                or (self.mode == "names" and name in self.names))


def _parse_print_ir_after(what: str | None, pipeline: Pipeline) -> _PrintIRAfter:
    if not what:
        return _PrintIRAfter()
    if what in ("all", "change"):
        return _PrintIRAfter(what)
    names = frozenset(n.strip() for n in what.split(",") if n.strip())
    missing = sorted(names - set(pipeline.step_names()))
    if missing:
        raise UsageError(f"--print-ir-after names {', '.join(missing)}, not in the pipeline "
                         f"'{pipeline.text()}'; use a pass name from it, 'all' or 'change'")
    return _PrintIRAfter("names", names)
