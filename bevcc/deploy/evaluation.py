"""`bevcc evaluate DIR`: run what a set compile wrote, as the deployment runs it, and hold it
against the PyTorch model it came from.

The chain of files is model-specific (which file feeds which, the runtime code between them), so
the set config names it: `evaluate = "pkg.module:function"`. bevcc calls
`function(directory, config, scenes, stream)`, which returns an `Evaluation`; bevcc prints it and
fails the command when a file or the task metric is off by more than the stated tolerance.
This module also holds what every such function needs: parity statistics that accumulate over
batches, and the PyTorch reference of a set (each file's fx pipeline, replayed with the decisions
the set recorded).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from bevcc.errors import InputError, UsageError

__all__ = [
    "MAX_METRIC_DIFF",
    "MIN_FILE_SQNR_DB",
    "Evaluation",
    "FileParity",
    "MetricRow",
    "Parity",
    "estimate",
    "reference_modules",
]

MIN_FILE_SQNR_DB = 25.0  # a file against its PyTorch subnet, fed the same inputs
MAX_METRIC_DIFF = 0.005  # |task metric of the files - of the PyTorch model|, absolute


class Parity:
    """Max abs error, cosine and SQNR of `got` against `want`, accumulated over calls."""

    def __init__(self):
        self.max_abs = 0.0
        self.dot = self.got_sq = self.want_sq = self.err_sq = 0.0

    def add(self, got, want) -> None:
        got = np.asarray(got, np.float64).ravel()
        want = np.asarray(want, np.float64).ravel()
        if got.shape != want.shape:
            raise InputError(f"parity: shapes differ ({got.shape} vs {want.shape})")
        err = got - want
        self.max_abs = max(self.max_abs, float(np.abs(err).max(initial=0.0)))
        self.dot += float(got @ want)
        self.got_sq += float(got @ got)
        self.want_sq += float(want @ want)
        self.err_sq += float(err @ err)

    @property
    def cosine(self) -> float:
        denominator = math.sqrt(self.got_sq * self.want_sq)
        return self.dot / denominator if denominator else 1.0

    @property
    def sqnr_db(self) -> float:
        if self.err_sq == 0:
            return math.inf
        return 10 * math.log10(self.want_sq / self.err_sq) if self.want_sq else -math.inf


@dataclass
class FileParity:
    """One deployed file against PyTorch. `max_abs`, `cosine`, `sqnr_db` and `chained_sqnr_db`
    compare it with the PyTorch model it was exported from (`reference`: the fake-quant model for
    an INT8 set, the float model for an FP16 set): the exactness check the tolerance applies to.
    The `float_*` fields compare it with the float PyTorch model: what INT8 (or FP16) costs."""

    set: str  # "int8" | "fp16" | ...
    file: str
    max_abs: float
    cosine: float
    sqnr_db: float  # the file alone, fed the PyTorch model's inputs at its boundary
    chained_sqnr_db: float | None  # inside the chain of files, against the PyTorch chain
    reference: str = "PyTorch"  # what the fields above compare with: "fake-quant" | "float"
    float_max_abs: float | None = None  # alone, fed the float model's inputs at its boundary
    float_cosine: float | None = None
    float_sqnr_db: float | None = None
    float_chained_sqnr_db: float | None = None  # inside the chain, against the float chain


@dataclass
class MetricRow:
    label: str
    pytorch: float | None  # the PyTorch model the files were exported from
    files: float | None
    float: float | None = None  # the float PyTorch model on the same scenes


def estimate(seconds: float, count: int, what: str = "scenes") -> str:
    """`about 3.4 min for 100 scenes`: a run's expected time, printed before the long part of it
    so the user can decide to wait or to ask for fewer."""
    span = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
    return f"about {span} for {count} {what}"


@dataclass
class Evaluation:
    metric: str
    scenes: int
    rows: list[MetricRow]
    parity: list[FileParity]
    min_file_sqnr_db: float = MIN_FILE_SQNR_DB
    max_metric_diff: float = MAX_METRIC_DIFF
    notes: list[str] = field(default_factory=list)
    # The largest change of the task metric one detection can make on these scenes (the plugin
    # knows its metric and ground truth). On a few scenes a single near-tie that two runtimes
    # order differently moves the metric more than max_metric_diff, so the tolerance is never
    # finer than this step.
    metric_step: float = 0.0

    @property
    def metric_tolerance(self) -> float:
        return max(self.max_metric_diff, self.metric_step)

    def failures(self) -> list[str]:
        found = [
            f"{p.set} set: {p.file} is {p.sqnr_db:.1f} dB SQNR from its PyTorch subnet "
            f"(needs >= {self.min_file_sqnr_db:g} dB; max abs error {p.max_abs:.3g})"
            for p in self.parity
            if not p.sqnr_db >= self.min_file_sqnr_db
        ]
        for row in self.rows:
            if (
                row.pytorch is not None
                and row.files is not None
                and not abs(row.files - row.pytorch) <= self.metric_tolerance
            ):
                found.append(
                    f"{row.label}: {self.metric} of the files {row.files:.4f} vs "
                    f"PyTorch {row.pytorch:.4f} (tolerance {self.metric_tolerance:.4g})"
                )
        return found

    def merged(self, other: Evaluation) -> Evaluation:
        """One table for two evaluations of the same metric and scenes (e.g. two sets)."""
        if (other.metric, other.scenes, other.metric_step) != (
            self.metric,
            self.scenes,
            self.metric_step,
        ):
            raise ValueError(
                f"cannot merge {other.metric} on {other.scenes} scenes (step "
                f"{other.metric_step:g}) into {self.metric} on {self.scenes} "
                f"scenes (step {self.metric_step:g})"
            )
        return replace(
            self,
            rows=self.rows + other.rows,
            parity=self.parity + other.parity,
            notes=self.notes + [n for n in other.notes if n not in self.notes],
        )

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "metric_tolerance": self.metric_tolerance,
            "failures": self.failures(),
        }

    def tolerance(self) -> str:
        """The pass/fail rule as one plain sentence."""
        widened = ""
        if self.metric_step > self.max_metric_diff:
            widened = (
                f" ({self.max_metric_diff:g}, widened to what one detection changes on "
                f"{self.scenes} scenes)"
            )
        return (
            f"The command fails when a file is under {self.min_file_sqnr_db:g} dB SQNR against "
            "the PyTorch model it was exported from, or when the files' "
            f"{self.metric} is more than {self.metric_tolerance:.4g} from that model's"
            f"{widened}."
        )

    def markdown(self) -> str:
        m = self.metric
        lines = [
            (
                f"| model | {m}: float PyTorch | {m}: its PyTorch model | {m}: deployed files | "
                "files - its model | files - float |"
            ),
            "|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            lines.append(
                f"| {row.label} | {_num(row.float)} | {_num(row.pytorch)} | {_num(row.files)} | "
                f"{_diff(row.files, row.pytorch)} | {_diff(row.files, row.float)} |"
            )
        against_float = [p for p in self.parity if p.float_sqnr_db is not None]
        if against_float:
            lines += [
                "",
                (
                    f"Each file against the float PyTorch model on {self.scenes} scenes, fed the "
                    "float model's inputs at its boundary (alone) and inside the chain of files "
                    "(chained): what INT8 or FP16 costs that file."
                ),
                "",
                "| set | file | SQNR dB alone | SQNR dB chained | cosine | max abs error |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {p.set} | {p.file} | {_db(p.float_sqnr_db)} | "
                f"{_db(p.float_chained_sqnr_db)} | {_num(p.float_cosine, '.6f')} | "
                f"{_num(p.float_max_abs, '.3g')} |"
                for p in against_float
            ]
        lines += [
            "",
            (
                f"Exactness check on {self.scenes} scenes: each file against the PyTorch model "
                "it was exported from (reference), fed that model's inputs at its boundary "
                "(alone) and inside the chain of files (chained). inf dB: identical outputs."
            ),
            "",
            "| set | file | reference | SQNR dB alone | SQNR dB chained | cosine | max abs error |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p.set} | {p.file} | {p.reference} | {_db(p.sqnr_db)} | "
            f"{_db(p.chained_sqnr_db)} | {p.cosine:.6f} | {p.max_abs:.3g} |"
            for p in self.parity
        ]
        lines += ["", self.tolerance()]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _num(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _db(value) -> str:
    return "-" if value is None else format(value, ".1f")


def _diff(value, base) -> str:
    return "-" if value is None or base is None else f"{value - base:+.4f}"


def set_report(directory: Path) -> dict:
    path = Path(directory) / "report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(
            f"{directory}: no readable report.json; give a directory written by "
            "`bevcc compile --config SET.toml -o DIR`"
        ) from None
    if not str(report.get("schema", "")).startswith("bevcc-set-report/"):
        raise InputError(f"{path}: not a set compile's report (schema {report.get('schema')!r})")
    return report


def reference_modules(config, directory: Path, quantized: bool, device: str = "cpu") -> dict:
    """{file name: the PyTorch module the file was exported from}, rebuilt from the config: the
    fx part of each pipeline, each pass repeating the decisions the set recorded
    (Pass.replay_options: sensitivity_disable reads its disable list instead of measuring
    again). `quantized=False` drops the quantization passes (the FP16 set). `device`: where
    their passes calibrate and measure (bevcc.compile's); the modules come back on the CPU."""
    from bevcc import progress
    from bevcc.compiler import compile as compile_model
    from bevcc.deploy.set_compile import float_spec
    from bevcc.plugins import get_registry
    from bevcc.pm.pipeline import IRGroup, StepSpec, parse_pipeline

    registry = get_registry()
    modules = {}
    kind = "quantized" if quantized else "float"
    for index, spec in enumerate(config.files, 1):
        if not quantized:
            spec = float_spec(spec, registry)
        group = next(
            (
                e
                for e in parse_pipeline(spec.pipeline).elements
                if isinstance(e, IRGroup) and e.ir == "fx"
            ),
            None,
        )
        if group is None:
            raise UsageError(
                f"file {spec.name}: its pipeline has no fx part, so there is no "
                "PyTorch model to compare it with"
            )
        reports = Path(directory) / "reports" / spec.name
        steps = []
        for step in group.steps:  # a pass that decided something replays its recorded decision
            cls = registry.lookup(step.name, "fx", conversion=False)
            replayed = cls.replay_options(list(step.options), reports)
            steps.append(step if replayed is None else StepSpec(step.name, replayed))
        label = f"PyTorch reference ({kind}): {spec.name}"
        with progress.step(label, index, len(config.files)):
            result = compile_model(
                spec.input,
                pipeline=IRGroup("fx", steps).text(),
                calib=spec.calib,
                stream=io.StringIO(),
                device=device,
            )
        modules[spec.name] = result.ir.module.eval()
    return modules
