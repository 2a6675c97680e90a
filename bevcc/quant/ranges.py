"""Calibrated ranges as a recorded decision: a set compile writes the amax each calibrating step
set, and `bevcc evaluate` sets them again instead of calibrating again.

Calibration is the slowest part of rebuilding a file's PyTorch model (every batch through the
model, a histogram per quantizer), and the rebuilt model must be the one the file was exported
from: recorded ranges give it that exactly, whichever device calibrated the set. One JSON file
per step, `<step>.ranges.json` in the file's artifacts directory; a step that runs twice in one
pipeline adds its later ranges to the same file, so replaying each step leaves every quantizer
with the range the compile ended with.
"""

from __future__ import annotations

import json
from dataclasses import field
from pathlib import Path

from bevcc.errors import InputError

# Light on purpose (torch is imported where amax are read or set): pass options import it, and
# `bevcc passes` reads options without importing torch.
FORMAT = "bevcc-ranges/1"
OPTION = "ranges"  # the option of each calibrating fx pass that names a recorded file


def ranges_field():
    """The option each calibrating pass adds to its options dataclass: `ranges: str = ...`."""
    return field(
        default="",
        metadata={
            "help": "a ranges file a set compile recorded (reports/FILE/STEP.ranges.json): "
            "the activation amax come from it and no batch runs (bevcc evaluate replays a set "
            "so); '' calibrates"
        },
    )


class ReplaysRanges:
    """Mixin of a pass that calibrates with bevcc.quant.calibrate: a set compile records the
    ranges it set, and rebuilding the file's PyTorch model replays them."""

    @classmethod
    def replay_options(cls, options, reports):
        return replay_options(options, reports, cls.name)

    def ranges_arguments(self) -> dict:
        """calibrate()'s replay_from / record_to for this step."""
        return {
            "replay_from": self.options.ranges or None,
            "record_to": record_path(self.context, self.name),
        }


def recorded_path(directory, step: str) -> Path:
    return Path(directory) / f"{step}.ranges.json"


def record_path(context, step: str) -> Path | None:
    """Where a step records its ranges: only in a compile that keeps its passes' records
    (PassContext.records_decisions: a set compile), never beside a plain output file."""
    if context is None or not getattr(context, "records_decisions", False):
        return None
    directory = getattr(context, "artifacts_dir", None)
    return None if directory is None else recorded_path(directory, step)


def replay_options(options: list[tuple[str, str]], reports, step: str):
    """The step's options with `ranges=` naming its recorded file, or None when the set has no
    record (compiled before ranges were recorded): the step then calibrates as written."""
    path = recorded_path(reports, step)
    if not path.is_file():
        return None
    return [*((k, v) for k, v in options if k != OPTION), (OPTION, str(path))]


def record(path: Path, quantizers: dict) -> None:
    """Add each quantizer's amax to `path` (created if missing)."""
    import torch

    from bevcc.atomic import write_text_atomic

    ranges = _read(path) if path.is_file() else {}
    for name, quantizer in quantizers.items():
        amax = quantizer.amax.detach().cpu().to(torch.float32)
        ranges[name] = {"shape": list(amax.shape), "amax": amax.flatten().tolist()}
    data = {"format": FORMAT, "ranges": dict(sorted(ranges.items()))}
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def replay(path, quantizers: dict) -> None:
    """Set each quantizer's amax from the file; a quantizer it lacks is one InputError."""
    import torch

    ranges = _read(Path(path))
    missing = sorted(set(quantizers) - set(ranges))
    if missing:
        raise InputError(
            f"{path}: no recorded range for {len(missing)} quantizer(s) ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}): it was recorded for another model or "
            "pipeline; compile the set again"
        )
    for name, quantizer in quantizers.items():
        entry = ranges[name]
        quantizer.set_amax(torch.tensor(entry["amax"], dtype=torch.float32).reshape(entry["shape"]))


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, not {FORMAT!r}")
        return dict(data["ranges"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            f"{path}: not a readable ranges file ({exc}); compile the set again"
        ) from exc
