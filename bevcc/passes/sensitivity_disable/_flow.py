"""`sensitivity_disable`'s IR-independent flow: find the quantized units whose INT8 costs
accuracy; keep them float.

`SensitivityFlow` holds what does not depend on the IR (options, decisions, measurement loop,
report); the FX pass (fx.py) and the ONNX one (onnx.py) give it the units, an evaluator and the
way to keep units float.

Decisions, in the order they apply:
  list=FILE          a disable list written by an earlier run (portable JSON)
  disable="a,b*"     names or globs of units/layers/quantizers (never substrings; a glob that
                     matches nothing is reported)
  top_k=K            the K most sensitive units
  min_sqnr_db=D      greedy in sensitivity order until the model's SQNR vs float is >= D
  max_drop=P         greedy until the task metric (metric=NAME) drops by at most P relative
With none of the budget options the pass only measures and reports. Measurements need --calib
(its first `eval_batches` batches are the evaluation data). The report (sensitivity.md/.json/.png)
and disable_list.json are written next to the output.
"""

from __future__ import annotations

import contextlib
import re
import warnings

from bevcc import progress
from bevcc.batching import fit_batches
from bevcc.distributed import rank_and_world
from bevcc.errors import InputError, UsageError
from bevcc.ir.base import IR
from bevcc.passes.sensitivity_disable import _set_report
from bevcc.pm.pass_base import Pass, PassResult
from bevcc.sensitivity import analysis, decide, report
from bevcc.sensitivity.metrics import BUILTIN


class SensitivityFlow(Pass):
    """The IR-independent part of sensitivity_disable; subclasses implement the four hooks
    (and take name, summary and options from their declaration)."""

    def _units(self, ir: IR) -> list:
        """The units, in graph order (each has name, layers, quantizers, macs)."""
        raise NotImplementedError

    def _input_names(self, ir: IR) -> list[str]:
        """The model's inputs, in call order (names for positional batches)."""
        raise NotImplementedError

    def _input_shapes(self, ir: IR):
        """Input name -> dims (None where free), for `fit_batches`; None when unknown."""
        raise NotImplementedError

    def _make_evaluator(self, ir: IR, units: list, batches: list[dict], metric):
        """An analysis.Evaluator over `batches`."""
        raise NotImplementedError

    def _disable(self, ir: IR, units: list, chosen: list) -> IR:
        """`ir` with the `chosen` units kept float (called only when there are some)."""
        raise NotImplementedError

    def _measuring_on(self, ir: IR):
        """A context the measurements run in: where the FX model moves to the compile's device
        (bevcc/device.py) and back to the CPU after them."""
        return contextlib.nullcontext()

    @classmethod
    def set_report_section(cls, runs, context):
        return _set_report.section(runs, context.artifacts, context.build_dir)

    @classmethod
    def set_report_lines(cls, entry):
        return _set_report.lines(entry)

    @classmethod
    def replay_options(cls, options, reports):
        return _set_report.replay(reports)

    def report(self, stats: dict) -> list[str]:
        if not stats.get("units"):
            return [
                ("no quantized units: nothing to measure (quantize first, e.g. with qdq_insert)")
            ]
        lines = [
            (
                f"{stats.get('units', 0)} units; kept float: "
                f"{', '.join(stats.get('disabled', [])) or 'none'}"
            )
        ]
        if stats.get("final") is not None:
            lines.append(f"  {report.values_line(stats)}")
        lines += [f"  pattern matched nothing: {p}" for p in stats.get("unused", [])]
        lines += [f"  wrote {p}" for p in stats.get("files", [])]
        return lines

    def call(self, ir: IR) -> PassResult:
        options = self.options
        units = self._units(ir)
        if not units:
            return PassResult(ir, modified=False, stats={"units": 0})
        explicit = [p for p in re.split(r"[,\s]+", options.disable.strip()) if p]
        self._listed_reason: dict = {}
        if options.list:
            listed, self._listed_reason = decide.read_disable_file(options.list)
            explicit += listed
        chosen, unused = decide.match_units(units, explicit)
        for pattern in unused:  # likely a typo: say so where the user looks, not only in stats
            warnings.warn(
                f"sensitivity_disable: '{pattern}' matches no quantized unit", stacklevel=2
            )
        budgets = [options.top_k > 0, options.min_sqnr_db is not None, options.max_drop is not None]
        if sum(budgets) > 1:
            raise UsageError("sensitivity_disable: give one of top_k, min_sqnr_db, max_drop")
        table, summary, files = {}, {}, []
        # a disable list is a decision already made, even an empty one: replaying it measures
        # nothing
        measuring = any(budgets) or not (explicit or options.list)
        if measuring:
            with self._measuring_on(ir):
                chosen, table, summary = self._measure(ir, units, chosen)
        if chosen:
            ir = self._disable(ir, units, chosen)
        disabled = {u.name for u in chosen}
        files = self._write(units, table, disabled, summary, options)
        return PassResult(
            ir,
            modified=bool(chosen),
            stats={
                "units": len(units),
                "disabled": [u.name for u in chosen],
                "disabled_layers": {u.name: list(u.layers) for u in chosen},
                "unused": unused,
                "table": table,
                "files": [str(f) for f in files],
                **summary,
            },
        )

    def _measure(self, ir: IR, units: list, chosen: list) -> tuple[list, dict, dict]:
        """Measure every unit and decide: (units kept float, the table, the summary)."""
        options, summary = self.options, {}
        with progress.step("evaluation data and float outputs"):
            evaluator, metric_name = self._evaluator(ir, units, options.min_sqnr_db is not None)
        modes = analysis.MODES if options.mode == "both" else (options.mode,)
        key = analysis.run_key(ir.fingerprint(), units, metric_name, len(evaluator.batches), modes)
        table = analysis.measure(evaluator, units, modes, self._results_path(), key)
        ordered = [u for u in decide.sensitivity_order(units, table) if u not in chosen]
        with progress.step("all units INT8"):
            summary["all_int8"] = self._score(evaluator, units, chosen)
        if options.top_k > 0:
            chosen = chosen + ordered[: options.top_k]
        elif options.min_sqnr_db is not None or options.max_drop is not None:
            chosen = self._greedy(evaluator, units, chosen, ordered)
        with progress.step("chosen units float"):
            summary["final"] = self._score(evaluator, units, chosen)
        summary["metric"] = metric_name
        summary.update(self._goal(metric_name))
        return chosen, table, summary

    # ---- helpers ------------------------------------------------------------------------------
    def _evaluator(self, ir: IR, units: list, sqnr_budget: bool):
        calib = self.context.calib if self.context is not None else None
        if calib is None:
            raise UsageError("sensitivity_disable needs evaluation data: give --calib DATA")
        registry = self.context.registry
        metrics = {**BUILTIN, **{n: e.obj for n, e in getattr(registry, "metrics", {}).items()}}
        name = "sqnr" if sqnr_budget else self.options.metric
        if name not in metrics:
            raise UsageError(
                f"sensitivity_disable: unknown metric '{name}' (known: "
                f"{', '.join(sorted(metrics))})"
            )
        calib.input_names = self._input_names(ir)
        batches = []
        for batch in fit_batches(calib, self._input_shapes(ir)):
            batches.append(batch)
            if len(batches) >= self.options.eval_batches:
                break
        if not batches:  # e.g. batches that lack the model's inputs
            raise InputError(
                f"calibration data {getattr(calib, 'description', '')} gave no "
                f"evaluation batch for the model's inputs "
                f"({', '.join(self._input_names(ir))}); give arrays keyed by them"
            )
        evaluator = self._make_evaluator(ir, units, batches, metrics[name])
        self._float_score = evaluator.metric(evaluator.reference, evaluator.reference, batches)
        return evaluator, name

    def _goal(self, metric_name: str) -> dict:
        """The float model's value ("float"; None for a metric measured against the float model,
        which is its reference: SQNR would be infinite), and the value the decision held the
        model to ("target", in the metric's units; None for top_k and names) with the option
        that set it ("goal")."""
        options, float_score = self.options, self._float_score
        goal = {
            "float": None if metric_name in BUILTIN else float_score,
            "target": None,
            "goal": None,
        }
        if options.min_sqnr_db is not None:
            goal.update(target=options.min_sqnr_db, goal=f"min_sqnr_db={options.min_sqnr_db:g}")
        elif options.max_drop is not None:
            goal.update(
                target=float_score - options.max_drop * abs(float_score),
                goal=f"max_drop={options.max_drop:g}",
            )
        elif options.top_k > 0:
            goal["goal"] = f"top_k={options.top_k}"
        return goal

    def _score(self, evaluator, units, disabled) -> float:
        return evaluator.score(quantized=True, except_units=disabled)

    def _greedy(self, evaluator, units, chosen, ordered):
        def holds(score: float) -> bool:
            if self.options.min_sqnr_db is not None:
                return score >= self.options.min_sqnr_db
            drop = (self._float_score - score) / max(abs(self._float_score), 1e-12)
            return drop <= self.options.max_drop

        chosen = list(chosen)
        # each unit kept float costs one evaluation; the budget usually holds long before all
        label = f"keeping units float until the budget holds (at most {len(ordered)})"
        for unit in progress.track(ordered, label, total=None, unit="unit"):
            if holds(self._score(evaluator, units, chosen)):
                break
            chosen.append(unit)
        return chosen

    def _results_path(self):
        if self.options.results:
            return self.options.results
        directory = getattr(self.context, "artifacts_dir", None)
        return directory / "sensitivity.jsonl" if directory is not None else None

    def _write(self, units, table, disabled, summary, options):
        directory = getattr(self.context, "artifacts_dir", None)
        rank, _ = rank_and_world()
        if directory is None or rank != 0:
            return []
        files = report.write_report(
            directory,
            summary.get("metric", options.metric),
            summary,
            report.rows(units, table, disabled),
        )
        listed = [u for u in units if u.name in disabled]
        reason = {
            k: v
            for k, v in {
                "top_k": options.top_k,
                "min_sqnr_db": options.min_sqnr_db,
                "max_drop": options.max_drop,
                "disable": options.disable,
                "metric": summary.get("metric"),
            }.items()
            if v
        }
        decide.write_disable_list(
            directory / "disable_list.json", listed, {**self._listed_reason, **reason}
        )
        return [*files, directory / "disable_list.json"]
