"""bn_fold's section of a set compile's report: folds summed over the file's bn_fold runs."""

from __future__ import annotations


def section(runs: list[dict]) -> dict:
    """report.json: {"bn_fold": {"folded": N, "by_pattern": {pattern: N}, "skipped": N}}."""
    by_pattern: dict[str, int] = {}
    for stats in runs:
        for pattern, count in stats.get("folded", {}).items():
            by_pattern[pattern] = by_pattern.get(pattern, 0) + count
    return {
        "bn_fold": {
            "folded": sum(by_pattern.values()),
            "by_pattern": by_pattern,
            "skipped": sum(len(stats.get("skipped", [])) for stats in runs),
        }
    }


def lines(entry: dict) -> list[str]:
    fold = entry.get("bn_fold")
    if fold is None:
        return []
    patterns = ", ".join(f"{k} {v}" for k, v in fold["by_pattern"].items())
    return [
        f"- bn_fold: folded {fold['folded']}"
        + (f" ({patterns})" if patterns else "")
        + f", skipped {fold['skipped']}"
    ]
