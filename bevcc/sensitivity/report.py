"""The sensitivity report: Markdown and JSON tables and a PNG bar chart, next to the artifacts."""

from __future__ import annotations

import io
import json
from pathlib import Path

from bevcc.atomic import write_bytes_atomic, write_text_atomic
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
    write_bytes_atomic(paths[2], bar_chart(metric, table_rows))
    return paths


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _percent(share) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def markdown(metric: str, summary: dict, table_rows: list[dict]) -> str:
    lines = [f"# Sensitivity ({metric}, higher is better)", ""]
    lines += [
        f"- {k.replace('_', ' ')}: {_fmt(v) if isinstance(v, float) else v}"
        for k, v in summary.items()
    ]
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


def bar_chart(metric: str, table_rows: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = [r["unit"] for r in table_rows]
    values = [r["alone_quantized"] if r["alone_quantized"] is not None else 0.0 for r in table_rows]
    colors = ["tab:red" if r["decision"] == "float" else "tab:blue" for r in table_rows]
    figure, axes = plt.subplots(figsize=(8, 0.3 * len(names) + 1.5))
    axes.barh(names, values, color=colors)
    axes.invert_yaxis()
    axes.set_xlabel(f"{metric} with only this unit quantized (red: kept float)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()
