"""What both bn_fold passes report: `bevcc compile` lines (folds per pattern, then each skip and
why) and their section of a set report, shared through one base class."""

from __future__ import annotations

from bevcc.passes.bn_fold import _set_report
from bevcc.pm.pass_base import Pass


def report_lines(stats: dict) -> list[str]:
    folded = stats.get("folded", {})
    skipped = stats.get("skipped", [])
    patterns = ", ".join(f"{pattern} {count}" for pattern, count in folded.items())
    lines = [
        f"folded {sum(folded.values())} BatchNorm"
        + (f" ({patterns})" if patterns else "")
        + f", skipped {len(skipped)}"
    ]
    lines += [f"  kept {s['batchnorm']} (after {s['into']}): {s['reason']}" for s in skipped]
    return lines


class BnFoldReporting(Pass):
    """The reporting half of fx and onnx bn_fold; subclasses implement `call`."""

    def report(self, stats: dict) -> list[str]:
        return report_lines(stats)

    @classmethod
    def set_report_section(cls, runs, context):
        return _set_report.section(runs)

    @classmethod
    def set_report_lines(cls, entry):
        return _set_report.lines(entry)
