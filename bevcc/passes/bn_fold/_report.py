"""The `bevcc compile` lines of both bn_fold passes: folds per pattern, then each skip and why."""

from __future__ import annotations


def report_lines(stats: dict) -> list[str]:
    folded = stats.get("folded", {})
    skipped = stats.get("skipped", [])
    patterns = ", ".join(f"{pattern} {count}" for pattern, count in folded.items())
    lines = [f"folded {sum(folded.values())} BatchNorm" + (f" ({patterns})" if patterns else "")
             + f", skipped {len(skipped)}"]
    lines += [f"  kept {s['batchnorm']} (after {s['into']}): {s['reason']}" for s in skipped]
    return lines
