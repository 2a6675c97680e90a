"""How long the commands that should answer at once take, as a user sees them: whole processes.

    python benchmarks/cli_latency.py [--repeat 5] [--out benchmarks/cli_latency.md]

Times `bevcc --help`, `bevcc passes`, `bevcc plugins` and a compile whose pipeline misspells a
pass (it must fail with one error line), each the best of --repeat runs of the console script
next to this Python, once with only the built-in plugin (BEVCC_DISABLE_PLUGIN_AUTOLOAD=1) and
once with the installed plugins (in this repo's dev environment, its five plugins: the report
names them). In the same run: `python -c pass` (the interpreter's floor) and
`python -c "import torch"` (the least these commands cost when the pass modules were imported to
list them). Writes a markdown table and prints it; exits 1 when any command takes GOAL_S or more
in either column. The regression test that keeps these commands free of torch, with the
built-ins and with this repo's plugins, is tests/test_cli_latency.py.

The console script imports bevcc by module name, so PYTHONPATH decides which checkout is timed:
`PYTHONPATH=.:plugins/bevcc-example:... python benchmarks/cli_latency.py` times a worktree.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path

GOAL_S = 1.0
BEVCC = Path(sys.executable).parent / "bevcc"
MISSPELT = "fx(bn_fodl),export"  # bn_fold, misspelt


REPORT = """# CLI latency

`python benchmarks/cli_latency.py --repeat {repeat}`: whole processes of the console script, the
best of {repeat} rounds that each run every command once; {python}, {machine}, {cpus} CPUs.
Goal: under {goal:.0f} s, with the built-ins only and with the installed plugins.
Installed plugins: {plugins}.

| command | built-ins only (s) | with the installed plugins (s) |
|---|---|---|
{table}

For comparison, in the same run: `python -c pass` {floor:.3f} s (the interpreter's floor),
`python -c "import torch"` {torch:.3f} s (the least each command cost while listing passes
imported their modules).

The plugins' hooks import nothing heavy: they declare their passes (`PassInfo`) and defer their
models, metrics and tracing rules (`registry.defer`) until a compile needs them
(docs/writing_passes.md, section 4). When their hooks imported their code (onnx-graphsurgeon for
bevcc-example's pass, torch for the models and metrics), the listing commands took about 3 s
with the plugins installed (`bevcc passes` 2.921 s, `bevcc plugins` 3.152 s on this machine).
"""


def _commands(scratch: Path) -> list[tuple[str, list[str], int]]:
    """(label, argv, expected exit code)"""
    bevcc = str(BEVCC)
    return [
        ("bevcc --help", [bevcc, "--help"], 0),
        ("bevcc passes", [bevcc, "passes"], 0),
        ("bevcc plugins", [bevcc, "plugins"], 0),
        (
            f"bevcc compile tiny_cnn --pipeline '{MISSPELT}'",
            [bevcc, "compile", "tiny_cnn", "-o", str(scratch / "m.onnx"), "--pipeline", MISSPELT],
            2,
        ),
    ]


def run_once(argv: list[str], env: dict[str, str], expected: int) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != expected:
        raise SystemExit(
            f"{' '.join(argv)} exited {proc.returncode}, expected {expected}:\n{proc.stderr}"
        )
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).with_name("cli_latency.md")))
    args = parser.parse_args(argv)
    builtins_only = dict(os.environ, BEVCC_DISABLE_PLUGIN_AUTOLOAD="1")
    installed = {k: v for k, v in os.environ.items() if k != "BEVCC_DISABLE_PLUGIN_AUTOLOAD"}
    python = sys.executable
    with tempfile.TemporaryDirectory() as scratch:
        commands = _commands(Path(scratch))
        runs = [
            ("floor", [python, "-c", "pass"], builtins_only, 0),
            ("torch", [python, "-c", "import torch"], builtins_only, 0),
        ]
        for label, command, code in commands:
            runs += [
                ((label, "ours"), command, builtins_only, code),
                ((label, "installed"), command, installed, code),
            ]
        best: dict = {}
        # round-robin, so a busy moment of the machine does not land on one command only
        for _ in range(args.repeat):
            for key, command, env, code in runs:
                best[key] = min(best.get(key, float("inf")), run_once(command, env, code))
    rows = [(label, best[(label, "ours")], best[(label, "installed")]) for label, _, _ in commands]
    plugins = sorted(
        f"{ep.name} {ep.dist.version}" if ep.dist else ep.name for ep in entry_points(group="bevcc")
    )
    table = "\n".join(f"| `{label}` | {ours:.3f} | {theirs:.3f} |" for label, ours, theirs in rows)
    text = REPORT.format(
        repeat=args.repeat,
        python=f"{platform.python_implementation()} {platform.python_version()}",
        machine=platform.machine(),
        cpus=os.cpu_count(),
        goal=GOAL_S,
        plugins=", ".join(plugins) or "none installed",
        table=table,
        floor=best["floor"],
        torch=best["torch"],
    )
    Path(args.out).write_text(text)
    sys.stdout.write(text)
    slow = [label for label, ours, theirs in rows if max(ours, theirs) >= GOAL_S]
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
