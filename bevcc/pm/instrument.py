"""Pass instrumentation: objects the manager calls around every pass (after MLIR's
PassInstrumentation), and the ones behind --print-ir-after, --print-ir-after-failure and --timing.

The manager calls, for each step in pipeline order:
    before_pass(step, ir)                      before the pass runs on `ir`
    after_pass(step, ir, result)               the pass returned `result` (a PassResult, `ir` is
                                               result.ir) and the checks accepted it
    after_failure(step, ir, error, returned)   the step failed with `error` (a PassError); `ir` is
                                               the IR the pass returned when `returned`, else the
                                               one it was given (with whatever it changed in place)
and once, after the last step succeeded:
    after_pipeline(ir, records)                the final IR and every step's StepRecord
Hooks run in the order the instrumentations were given. A failing step gets after_failure
instead of after_pass; an exception raised by a hook itself ends the run as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

from bevcc import progress
from bevcc.errors import UsageError


class Instrumentation:
    """Base class with no-op hooks: override the ones you need (see the module docstring)."""

    def before_pass(self, step, ir) -> None:
        pass

    def after_pass(self, step, ir, result) -> None:
        pass

    def after_failure(self, step, ir, error, returned: bool) -> None:
        pass

    def after_pipeline(self, ir, records) -> None:
        pass


def print_ir(label: str, ir, modified: bool, stream: TextIO) -> None:
    state = "changed" if modified else "unchanged"
    with progress.paused():  # off a progress bar's line
        stream.write(f"// ----- IR after {label} ({state}) ----- //\n")
        stream.write(ir.dump())
        stream.flush()


def print_timing(records, stream: TextIO) -> None:
    with progress.paused():  # off a progress bar's line
        _print_timing(records, stream)


def _print_timing(records, stream: TextIO) -> None:
    total_pass = sum(r.seconds for r in records)
    total_verify = sum(r.verify_seconds for r in records)
    stream.write("===- bevcc pass timing -===\n")
    stream.write(f"{'pass (s)':>10} {'verify (s)':>11} {'nodes':>7}  step\n")
    for r in records:
        flag = "" if r.modified else "  (unchanged)"
        stream.write(
            f"{r.seconds:10.4f} {r.verify_seconds:11.4f} {r.nodes_after:7d}  {r.name}{flag}\n"
        )
    stream.write(f"{total_pass:10.4f} {total_verify:11.4f} {'':7}  total\n")
    stream.flush()


@dataclass
class PrintIRAfter(Instrumentation):
    """--print-ir-after NAME[,NAME]|all|change: the canonical dump after the chosen steps."""

    mode: str  # all | change | names
    names: frozenset[str]
    stream: TextIO

    @classmethod
    def parse(cls, what: str, pipeline, stream: TextIO) -> PrintIRAfter:
        """Names are checked against the pipeline now, before any model is loaded."""
        if what in ("all", "change"):
            return cls(what, frozenset(), stream)
        names = frozenset(n.strip() for n in what.split(",") if n.strip())
        missing = sorted(names - set(pipeline.step_names()))
        if missing:
            raise UsageError(
                f"--print-ir-after names {', '.join(missing)}, not in the pipeline "
                f"'{pipeline.text()}'; use a pass name from it, 'all' or 'change'"
            )
        return cls("names", names, stream)

    def after_pass(self, step, ir, result) -> None:
        modified = result.modified or step.is_conversion  # a conversion always counts as changed
        if (
            self.mode == "all"
            or (self.mode == "change" and modified)
            or (self.mode == "names" and step.spec.name in self.names)
        ):
            print_ir(step.label, ir, modified, self.stream)


@dataclass
class PrintIRAfterFailure(Instrumentation):
    """--print-ir-after-failure: the IR a failing step left behind, saying which IR it is."""

    stream: TextIO

    def after_failure(self, step, ir, error, returned: bool) -> None:
        which = (
            "as the pass returned it"
            if returned
            else "the pass returned none; this is the IR it was given, with any changes it made "
            "in place"
        )
        try:
            text = ir.dump()
        except Exception as exc:  # noqa: BLE001 (a broken graph may not dump; the pass error follows)
            first = next(
                (line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__
            )
            text = f"// the IR cannot be printed: {type(exc).__name__}: {first}\n"
        with progress.paused():  # off a progress bar's line
            self.stream.write(f"// ----- IR after {step.label} failed ({which}) ----- //\n")
            self.stream.write(text)
            self.stream.flush()


@dataclass
class Timing(Instrumentation):
    """--timing: the table of pass and verify seconds per step, once the pipeline is done."""

    stream: TextIO

    def after_pipeline(self, ir, records) -> None:
        print_timing(records, self.stream)
