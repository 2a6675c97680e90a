"""sensitivity_disable's part of a set compile: its report section (what the last run kept
float and why) and the replay of its recorded decisions by `bevcc evaluate`."""

from __future__ import annotations

from pathlib import Path

from bevcc.errors import InputError

RANKING_ROWS = 10


def section(runs: list[dict], artifacts: Path, build_dir: Path) -> dict:
    """report.json: "kept_float" (the units kept float), "kept_float_layers" (their layers) and
    "sensitivity" (the last run)."""
    from bevcc.sensitivity.decide import ranked_names

    stats = runs[-1]
    table, disabled = stats.get("table", {}), set(stats.get("disabled", []))
    ranking = [
        {
            "unit": name,
            "alone_quantized": table[name].get("alone_quantized"),
            "alone_float": table[name].get("alone_float"),
            "decision": "float" if name in disabled else "int8",
        }
        for name in ranked_names(table)[:RANKING_ROWS]
    ]
    markdown = Path(artifacts) / "sensitivity.md"
    return {
        "kept_float": list(stats.get("disabled", [])),
        # unit -> its layers, so the report can say why a layer is not INT8
        "kept_float_layers": dict(stats.get("disabled_layers", {})),
        "sensitivity": {
            "metric": stats.get("metric"),
            "float": stats.get("float"),
            "all_int8": stats.get("all_int8"),
            "final": stats.get("final"),
            "target": stats.get("target"),
            "goal": stats.get("goal"),
            "units": stats.get("units", 0),
            "ranking": ranking,
            "report": str(markdown.relative_to(build_dir)) if markdown.is_file() else None,
        },
    }


def lines(entry: dict) -> list[str]:
    from bevcc.sensitivity.report import values_line

    s = entry.get("sensitivity")
    if s is None:
        return []
    kept = ", ".join(entry.get("kept_float") or []) or "none"
    out = [
        f"- kept float by sensitivity_disable: {kept} (of {s['units']} units"
        + (f"; full table `{s['report']}`)" if s["report"] else ")")
    ]
    if s["metric"] is None:
        return out  # explicit names only: nothing was measured
    out += [
        f"- {values_line(s)}",
        "",
        (f"| rank | unit | {s['metric']} alone quantized | {s['metric']} alone float | decision |"),
        "|---|---|---|---|---|",
    ]
    out += [
        f"| {i} | {row['unit']} | {_number(row['alone_quantized'])} | "
        f"{_number(row['alone_float'])} | {row['decision']} |"
        for i, row in enumerate(s["ranking"], 1)
    ]
    return out


def replay(reports: Path) -> list[tuple[str, str]]:
    """The step's options that repeat the set's decision: its recorded disable list."""
    recorded = Path(reports) / "disable_list.json"
    if not recorded.is_file():
        raise InputError(
            f"{recorded}: missing; the set's sensitivity decisions are needed to "
            "rebuild its PyTorch model"
        )
    return [("list", str(recorded))]


def _number(value) -> str:
    return "-" if value is None else f"{value:.4g}"
