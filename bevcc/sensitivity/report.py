"""The sensitivity report: Markdown and JSON tables and a PNG bar chart, next to the artifacts."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from bevcc.atomic import write_bytes_atomic, write_text_atomic
from bevcc.sensitivity.metrics import MAX_SQNR_DB
from bevcc.sensitivity.units import Unit


def rows(units: list[Unit], table: dict, disabled: set[str]) -> list[dict]:
    # Sparse layers count no MACs (their cost depends on the voxels): a model of sparse layers
    # only has no MAC share to report, which is not the same as 0%.
    total = sum(u.macs for u in units)
    return [
        {
            "unit": u.name,
            "layers": u.layers,
            "alone_quantized": table.get(u.name, {}).get("alone_quantized"),
            "alone_float": table.get(u.name, {}).get("alone_float"),
            "mac_share": u.macs / total if total else None,
            "decision": "float" if u.name in disabled else "int8",
        }
        for u in units
    ]


def write_report(directory, metric: str, summary: dict, table_rows: list[dict]) -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = {"metric": metric, **summary, "units": table_rows}
    paths = [
        directory / "sensitivity.json",
        directory / "sensitivity.md",
        directory / "sensitivity.png",
    ]
    write_text_atomic(paths[0], json.dumps(data, indent=2) + "\n")
    write_text_atomic(paths[1], markdown(metric, summary, table_rows))
    write_bytes_atomic(paths[2], bar_chart(metric, table_rows, summary))
    return paths


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _percent(share) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def values_line(summary: dict) -> str:
    """The float, all-INT8 and final values and the goal, as one line:
    `sqnr vs the float model: float (reference), all INT8 29.09, final 32.03; target >= 32
    (min_sqnr_db=32)`. A metric measured against the float model (SQNR, cosine) has the float
    model as its reference, so it has no float value of its own."""
    metric = summary.get("metric")
    if summary.get("float") is None:
        head = f"{metric} vs the float model: float (reference)"
    else:
        head = f"{metric}: float {_fmt(summary['float'])}"
    line = f"{head}, all INT8 {_fmt(summary.get('all_int8'))}, final {_fmt(summary.get('final'))}"
    if summary.get("target") is not None:
        line += f"; target >= {_fmt(summary['target'])} ({summary.get('goal')})"
    elif summary.get("goal"):
        line += f"; {summary['goal']}"
    return line


def markdown(metric: str, summary: dict, table_rows: list[dict]) -> str:
    lines = [f"# Sensitivity ({metric}, higher is better)", ""]
    if summary.get("final") is not None:
        lines += [f"- {values_line({'metric': metric, **summary})}"]
    kept = [r["unit"] for r in table_rows if r["decision"] == "float"]
    lines += [f"- kept float: {', '.join(kept) or 'none'} (of {len(table_rows)} units)"]
    lines += [
        "",
        (
            f"| unit | layers | {metric} alone quantized | {metric} alone float | "
            "MAC share | decision |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for row in table_rows:
        lines.append(
            f"| {row['unit']} | {', '.join(row['layers']) or '-'} | "
            f"{_fmt(row['alone_quantized'])} | {_fmt(row['alone_float'])} | "
            f"{_percent(row['mac_share'])} | {row['decision']} |"
        )
    return "\n".join(lines) + "\n"


def chart_title(metric: str, table_rows: list[dict], summary: dict) -> str:
    """Two lines: what is plotted, and what was decided (and by which goal)."""
    kept = sum(r["decision"] == "float" for r in table_rows)
    goal = f" ({summary['goal']})" if summary.get("goal") else ""
    return (
        f"Sensitivity of {len(table_rows)} units: {metric} with only that unit in INT8\n"
        f"kept float: {kept}{goal}"
    )


def sensitivity_figure(metric: str, summary: dict, table_rows: list[dict]):
    """The chart as a matplotlib Figure: per unit, the metric with only that unit quantized
    (most sensitive on top, red: kept float), and vertical lines for the target the decision
    used, the float model (task metrics), all INT8 and the final model. The axis spans those
    values with a margin, not from 0: units 0.003 apart must look apart."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib.figure import Figure

    measured = [r for r in table_rows if _finite(r["alone_quantized"])]
    measured.sort(key=lambda r: r["alone_quantized"])
    lines = _reference_lines(summary)
    low, high = _span([r["alone_quantized"] for r in measured] + [v for _, v, *_ in lines])
    figure = Figure(figsize=(9, 0.3 * len(measured) + 2.4), layout="constrained")
    axes = figure.add_subplot()
    for row in measured:
        kept = row["decision"] == "float"
        axes.plot(
            [min(max(row["alone_quantized"], low), high)],
            [row["unit"]],
            "o",
            color="tab:red" if kept else "tab:blue",
        )
    for label, value, color, style in lines:
        axes.axvline(value, color=color, linestyle=style, label=label)
    axes.set_xlim(low, high)
    axes.invert_yaxis()  # most sensitive first
    axes.grid(axis="x", alpha=0.3)
    axes.set_xlabel(f"{metric} with only this unit quantized (red: kept float, blue: INT8)")
    axes.set_title(chart_title(metric, table_rows, summary), fontsize=10)
    if lines:  # beside the plot, where it hides no unit
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return figure


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _reference_lines(summary: dict) -> list[tuple[str, float, str, str]]:
    """(legend label, value, color, line style) of the lines the chart draws."""
    lines = []
    if _finite(summary.get("target")):
        label = f"target >= {_fmt(summary['target'])} ({summary.get('goal')})"
        lines.append((label, summary["target"], "tab:red", "--"))
    for key, label, color, style in (
        ("float", "float", "black", "-"),
        ("all_int8", "all INT8", "tab:gray", ":"),
        ("final", "final", "tab:green", "-."),
    ):
        if _finite(summary.get(key)):
            lines.append((f"{label} {_fmt(summary[key])}", summary[key], color, style))
    return lines


def _span(values: list[float]) -> tuple[float, float]:
    """Axis limits around `values` with a 10% margin each side; the SQNR of an exact match (its
    cap) does not stretch the axis for the others."""
    values = [v for v in values if _finite(v) and v < MAX_SQNR_DB] or [0.0]
    low, high = min(values), max(values)
    margin = 0.1 * (high - low) or 0.05 * abs(high) or 1.0
    return low - margin, high + margin


def bar_chart(metric: str, table_rows: list[dict], summary: dict | None = None) -> bytes:
    """The chart as PNG bytes, its title also in the PNG's Title text chunk."""
    figure = sensitivity_figure(metric, summary or {}, table_rows)
    buffer = io.BytesIO()
    figure.savefig(
        buffer,
        format="png",
        dpi=100,
        metadata={"Software": None, "Title": chart_title(metric, table_rows, summary or {})},
    )
    return buffer.getvalue()
