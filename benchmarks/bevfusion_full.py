"""Wall time and peak memory of compiling the full-size BEVFusion architecture (6 cameras
256x704, sparse shape 1440x1440x41, real widths, seeded weights) through the five-file set.

Run: .venv/bin/python benchmarks/bevfusion_full.py     (writes benchmarks/bevfusion_full.md)

The compile runs in a child `bevcc compile --config .../bevfusion_full.toml` so its peak RSS is
its own; the per-file times come from the set's report.json. Two calibration scenes are rendered
at full resolution (cached after the first run under ~/.cache/bevcc).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "plugins" / "bevcc-bevfusion" / "bevcc_bevfusion" / "bevfusion_full.toml"


def main() -> int:
    bevcc = Path(sys.executable).parent / "bevcc"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bevfusion_full"
        start = time.perf_counter()
        subprocess.run(
            [str(bevcc), "compile", "--config", str(CONFIG), "-o", str(out)],
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "2"},
        )
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        report = json.loads((out / "report.json").read_text())
        sizes = {f["name"]: (out / f["file"]).stat().st_size / 2**20 for f in report["files"]}
    command = "`.venv/bin/python benchmarks/bevfusion_full.py`"
    lines = [
        "# Full-size BEVFusion through the pipeline",
        "",
        f"{command} on this machine ({os.cpu_count()} cores, no GPU).",
        "",
        (
            f"- wall time (whole command, incl. rendering/loading the 2 calibration scenes "
            f"and the float pass that makes each file's calibration inputs): "
            f"**{seconds:.0f} s**"
        ),
        f"- peak RSS: **{peak_mb:.0f} MB**",
        "",
        (
            "| file | precision | Q/DQ pairs | lint errors | predicted Reformats | "
            "INT8 MAC share | compile s | size MB |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in report["files"]:
        lint = f["lint"]
        share = lint["int8_mac_share"]
        lines.append(
            f"| {f['name']} | {f['precision']} | {f['qdq']['quantize_linear']} | "
            f"{lint['errors']} | {_dash(lint['predicted_reformats'])} | "
            f"{'-' if share is None else f'{share:.1%}'} | {f['seconds']:.1f} | "
            f"{sizes[f['name']]:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    (Path(__file__).parent / "bevfusion_full.md").write_text(text)
    sys.stdout.write(text)
    return 0


def _dash(value) -> str:
    return "-" if value is None else str(value)  # libspconv files: no TensorRT Reformats


if __name__ == "__main__":
    sys.exit(main())
