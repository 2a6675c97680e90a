"""The full-size BEVFusion architecture (6 cameras 256x704, sparse shape 1440x1440x41, real
widths, seeded weights) calibrated on many scenes with sensitivity_disable, on one device: wall
time per stage, peak GPU memory per stage, and for each quantized file the calibration forward
time over the float forward time (quantizers collecting statistics; goal <= 1.3) and the
fake-quant forward time over it (the cost of simulating calibrated INT8, e.g. in QAT).

    python benchmarks/bevfusion_full_gpu.py --device cuda [--scenes 300]
    python benchmarks/bevfusion_full_gpu.py --device cpu --scenes 2     (the CPU/GPU ratio)
    python benchmarks/bevfusion_full_gpu.py --quick --json J --md M     (small preset, 2 scenes)
    python benchmarks/bevfusion_full_gpu.py --device cuda --files lidar.backbone.xyz,fuser

`--files` compiles only the named files and merges them into the stored run of the same device
and scene count, each row marked with the call that made it: a machine whose commands are
limited in time (ten minutes on the project's GPU machine) runs the set in two calls, the second
reading the scenes the first generated. The JSON and the page are rewritten after every stage, so
a call stopped part-way leaves what it measured (marked partial).

Stages: the calibration scenes generated (`--jobs` processes; cached under ~/.cache/bevcc), the
float model's pass over them that makes each file's calibration inputs (the way CUDA-BEVFusion's
ptq.py calibrates: one float pass), then each file's compile with the pipelines bevfusion.toml
ships (histogram calibration, sensitivity_disable by SQNR: the task-metric rule of the small
model's fuser needs its trained weights and becomes `min_sqnr_db` here). Each run replaces its
device's entry in the JSON (default benchmarks/bevfusion_full_gpu.json), and the Markdown
(default benchmarks/bevfusion_full_gpu.md) is rendered from every entry there.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parent / "plugins" / "bevcc-bevfusion" / "bevcc_bevfusion"
SHIPPED = PLUGIN / "bevfusion.toml"  # the pipelines (their calibrators, sensitivity rules)
# the small model's fuser rule scores detections with its trained weights; seeded full-size
# weights detect nothing, so their fuser keeps units float by SQNR like the camera backbone
FUSER_RULE = (
    "metric=bevfusion_map,max_drop=0.005,eval_batches=32",
    "min_sqnr_db=25,eval_batches=8",
)
TIMED_BATCHES = 16  # batches the fake-quant and float forwards are timed on (after one warm-up)
GOAL_RATIO = 1.3


def pipelines(scenes: int, only: list[str] | None = None) -> dict[str, tuple[str, bool]]:
    """file name -> (pipeline, calibrated?) from bevfusion.toml, for the full-size files (those
    named in `only`, when given)."""
    result = {}
    for entry in tomllib.loads(SHIPPED.read_text())["files"]:
        if only is not None and entry["name"] not in only:
            continue
        text = entry["pipeline"].replace(*FUSER_RULE)
        # sensitivity runs at most as many batches as there are scenes
        for n in (8, 32):
            text = text.replace(f"eval_batches={n}", f"eval_batches={min(n, scenes)}")
        result[entry["name"]] = (text, entry["precision"] in ("int8", "libspconv"))
    return result


class Stages:
    """Wall time and peak GPU memory of each stage, in order; `after_each()` runs after every
    stage (the partial results are written there)."""

    def __init__(self, device: str, call: int = 1, after_each=lambda: None):
        self.device, self.rows, self.call, self.after_each = device, [], call, after_each

    def run(self, name: str, detail: str, work, **extra):
        """`work()` timed as stage `name` (a key the CPU and GPU runs share), shown with
        `detail`."""
        import torch

        cuda = self.device != "cpu"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        print(f"-- {name} {detail}".rstrip(), file=sys.stderr, flush=True)
        start = time.perf_counter()
        value = work()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        self.rows.append(
            {
                "stage": name,
                "detail": detail,
                "seconds": round(seconds, 2),
                "peak_gpu_mb": peak,
                "call": self.call,
            }
            | extra
        )
        print(f"   {seconds:.1f} s", file=sys.stderr, flush=True)
        self.after_each()
        return value


def float_pass(model, scenes, calibrated: set[str], device: str) -> dict[str, list]:
    """file -> its input batches (CPU tensors): every scene for the calibrated files, the first
    scene (the export example) for the others. Outputs are dropped as they come: 300 full-size
    scenes of every boundary would not fit in memory."""
    import torch
    from bevcc_bevfusion.model import scene_inputs

    batches: dict[str, list] = {}
    model.to(device)
    try:
        with torch.no_grad():
            for i, s in enumerate(scenes):
                record = {}
                model(*(t.to(device) for t in scene_inputs(s)), record)
                for file, (inputs, _) in record.items():
                    if i == 0 or file in calibrated:
                        batches.setdefault(file, []).append(tuple(t.cpu() for t in inputs))
    finally:
        model.to("cpu")
    return batches


def capture():
    """An instrumentation that keeps the fx module as it enters the first conversion (export):
    the calibrated fake-quant model."""
    from bevcc.pm.instrument import Instrumentation

    class Capture(Instrumentation):
        module = None

        def before_pass(self, step, ir) -> None:
            if step.is_conversion and self.module is None:
                self.module = copy.deepcopy(ir.module)

    return Capture()


def forward_seconds(module, batches, device: str, moved: bool = False) -> float:
    """Seconds of `module`'s forwards over CPU `batches` on `device`, after one warm-up forward:
    with the batches already there, or `moved` there one at a time as they are used (as
    calibration feeds them)."""
    import torch

    from bevcc.device import running_on, to_device

    def on_device(batch):
        return tuple(to_device(t, device) for t in batch)

    module = module.eval()
    with torch.no_grad(), running_on(module, device):
        feed = batches if moved else [on_device(b) for b in batches]
        module(*on_device(feed[0]))
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for b in feed:
            module(*(on_device(b) if moved else b))
        if device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def calibration_seconds(fake_quant, batches, device: str) -> float:
    """Seconds of a calibration pass over `batches` as bevcc.quant.calibrate runs one: the
    activation quantizers of the calibrated `fake_quant` module collecting statistics again with
    their own calibrator, weights unquantized, each batch moved to `device` as it is used; after
    one warm-up forward."""
    from bevcc.quant.quantizer import TensorQuantizer

    module = copy.deepcopy(fake_quant)
    for name, q in module.named_modules():
        if isinstance(q, TensorQuantizer) and q.enabled:
            if name.endswith("weight_quantizer"):
                q.enabled = False
            else:
                q.start_calibration()
    return forward_seconds(module, batches, device, moved=True)


def measure(preset_name: str, scenes: int, device: str, jobs: int, only, publish) -> dict:
    """One call's run: the scenes, the float pass and the compile of each chosen file.
    `publish(run)` gets the run so far after every stage (`complete` is False until the end)."""
    import torch
    from bevcc_bevfusion.dataset import cache_dir, load_split
    from bevcc_bevfusion.deploy import build_model
    from bevcc_bevfusion.model import SUBNETS
    from bevcc_bevfusion.presets import preset

    import bevcc

    chosen = preset(preset_name)
    files = pipelines(scenes, only)
    calibrated = {name for name, (_, calib) in files.items() if calib}
    began = time.perf_counter()
    ratios = []
    run = {
        "device": device,
        "device_name": torch.cuda.get_device_name(device)
        if device != "cpu"
        else platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "preset": preset_name,
        "scenes": scenes,
        "files": list(files),
        "complete": False,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }

    def update() -> None:
        run["seconds"] = round(time.perf_counter() - began, 1)
        run["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        run["stages"], run["forward_ratios"] = stages.rows, ratios
        publish(run)

    stages = Stages(device, after_each=update)
    cached = sum((cache_dir(chosen) / f"calib-{i:05d}.npz").is_file() for i in range(scenes))
    data = stages.run(
        "generate scenes",
        f"({scenes} calibration scenes: {scenes - cached} generated by {jobs} processes, "
        f"{cached} read from the cache)",
        lambda: load_split("calib", scenes, chosen, jobs),
    )
    model = stages.run("build model", "(seeded float model)", lambda: build_model(chosen, None))
    batches = stages.run(
        "float pass",
        "(every file's calibration inputs)",
        lambda: float_pass(model, data, calibrated, device),
    )
    data = None  # the scenes' tensors: only the batches are needed now
    attributes = {file: attr for attr, file in SUBNETS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for file, (pipeline, calib) in files.items():
            module = getattr(model, attributes[file])
            hook = capture()
            result = stages.run(
                f"compile {file}",
                "",
                lambda module=module, file=file, pipeline=pipeline, calib=calib, hook=hook: (
                    bevcc.compile(
                        (module, batches[file][0]),
                        pipeline=pipeline,
                        calib=batches[file] if calib else None,
                        output=Path(tmp) / f"{file}.onnx",
                        device=device,
                        instrumentations=[hook],
                        stream=sys.stderr,
                    )
                ),
                pipeline=pipeline,
            )
            stages.rows[-1]["passes"] = [
                {"name": r.name, "seconds": round(r.wall_seconds, 2)} for r in result.records
            ]
            if calib and hook.module is not None:
                timed = batches[file][:TIMED_BATCHES]
                fake_quant = forward_seconds(hook.module, timed, device)
                plain = forward_seconds(module, timed, device)
                calibrating = calibration_seconds(hook.module, timed, device)
                fed = forward_seconds(module, timed, device, moved=True)
                ratios.append(
                    {
                        "file": file,
                        "batches": len(timed),
                        "calibration_s": round(calibrating, 6),
                        "fed_float_s": round(fed, 6),
                        "calibration_ratio": round(calibrating / fed, 3),
                        "fake_quant_s": round(fake_quant, 6),
                        "float_s": round(plain, 6),
                        "ratio": round(fake_quant / plain, 3),
                    }
                )
                print(
                    f"   calibration / float forward: {calibrating / fed:.2f}, "
                    f"fake-quant / float forward: {fake_quant / plain:.2f}",
                    file=sys.stderr,
                )
            update()
    run["complete"] = True
    update()
    return run


def merge(stored: dict | None, run: dict) -> tuple[dict, bool]:
    """`run` (one call, perhaps only some files) joined to the stored run of the same device
    and scene count: the stored rows of the files this call did not compile stay, marked with
    their own call; every call's scene and float-pass rows are kept, since each call paid them.
    Returns the run and whether it was joined to the stored one."""
    if (
        stored is None
        or stored.get("scenes") != run["scenes"]
        or run["files"] == list(pipelines(run["scenes"]))
    ):
        return run, False
    call = max(row.get("call", 1) for row in stored["stages"]) + 1
    for row in run["stages"]:
        row["call"] = call
    again = {f"compile {file}" for file in run["files"]}
    kept = [row for row in stored["stages"] if row["stage"] not in again]
    ratios = [r for r in stored["forward_ratios"] if r["file"] not in run["files"]]
    files = [f for f in stored.get("files", []) if f not in run["files"]] + run["files"]
    order = list(pipelines(run["scenes"]))
    joined = run | {
        "stages": kept + run["stages"],
        "forward_ratios": sorted(
            ratios + run["forward_ratios"], key=lambda r: order.index(r["file"])
        ),
        "files": sorted(files, key=order.index),
        "seconds": round(stored["seconds"] + run["seconds"], 1),
        "peak_rss_mb": max(stored["peak_rss_mb"], run["peak_rss_mb"]),
        "complete": run["complete"] and set(files) == set(order),
    }
    return joined, True


def render(runs: dict, command_of: dict) -> str:
    """The Markdown page from every run in the JSON (one per device kind)."""
    lines = [
        "# Full-size BEVFusion calibrated on a GPU",
        "",
        "The full-size architecture (6 cameras 256x704, sparse 1440x1440x41, seeded weights) through",
        "the five files with bevfusion.toml's pipelines (histogram calibration, sensitivity_disable",
        "by SQNR), calibrated on N scenes. Rendered by benchmarks/bevfusion_full_gpu.py from its JSON.",
        "",
    ]
    for key, run in runs.items():
        commands = command_of.get(key, "?")
        commands = [commands] if isinstance(commands, str) else commands
        calls = len(commands) > 1
        shown = (
            f"`{commands[0]}`"
            if not calls
            else ", ".join(f"call {i}: `{c}`" for i, c in enumerate(commands, 1))
        )
        partial = "" if run.get("complete", True) else " **Partial: stopped before the end.**"
        every = list(pipelines(run["scenes"]))
        if run.get("files", every) != every:
            partial += f" Files compiled: {', '.join(run['files'])} (of {len(every)})."
        lines += [
            f"## {key}: {run['device_name']} ({run['cpu_cores']} cores), {run['scenes']} scenes",
            "",
            (
                f"{shown} on {run['date']}: **{run['seconds']:.0f} s** in "
                f"all, peak RSS {run['peak_rss_mb']} MB.{partial}"
            ),
            "",
            "| stage | wall s | peak GPU MB | passes (s) |",
            "|---|---|---|---|",
        ]
        for row in run["stages"]:
            peak = "-" if row["peak_gpu_mb"] is None else f"{row['peak_gpu_mb']:.0f}"
            passes = ", ".join(
                f"{_short(p['name'])} {p['seconds']:.1f}" for p in row.get("passes", [])
            )
            stage = f"{row['stage']} {row['detail']}".rstrip()
            if calls:
                stage = f"call {row.get('call', 1)}: {stage}"
            lines.append(f"| {stage} | {row['seconds']:.1f} | {peak} | {passes or '-'} |")
        lines += [
            "",
            (
                "Forward time over the float forward time, same module and batches: calibrating "
                "(statistics collected, batches moved to the device one at a time; "
                f"goal <= {GOAL_RATIO})"
            ),
            "and fake-quant (the calibrated INT8 simulation, batches already on the device):",
            "",
            (
                "| file | batches | calibrating s | float s | calibration ratio "
                "| fake-quant s | float s | fake-quant ratio |"
            ),
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in run["forward_ratios"]:
            if "calibration_ratio" in r:
                mark = "" if r["calibration_ratio"] <= GOAL_RATIO else " (over the goal)"
                calib = (
                    f"{r['calibration_s']:.3f} | {r['fed_float_s']:.3f} | "
                    f"{r['calibration_ratio']:.2f}{mark}"
                )
            else:  # a run made before the calibration ratio was measured
                calib = "- | - | -"
            lines.append(
                f"| {r['file']} | {r['batches']} | {calib} | {r['fake_quant_s']:.3f} | "
                f"{r['float_s']:.3f} | {r['ratio']:.2f} |"
            )
        lines.append("")
    gpu = next((r for k, r in runs.items() if r["device"] != "cpu"), None)
    cpu = runs.get("cpu")
    if gpu and cpu:
        lines += [
            "## CPU over GPU, per calibration scene",
            "",
            "Stages that scale with the scene count, as seconds per scene (CPU / GPU):",
            "",
            "| stage | CPU s/scene | GPU s/scene | CPU/GPU |",
            "|---|---|---|---|",
        ]
        for c in cpu["stages"]:
            g = next((s for s in gpu["stages"] if s["stage"] == c["stage"]), None)
            if g is None or c["stage"] == "build model":
                continue
            cs, gs = c["seconds"] / cpu["scenes"], g["seconds"] / gpu["scenes"]
            ratio = f"{cs / gs:.1f}" if gs else "-"
            lines.append(f"| {c['stage']} | {cs:.2f} | {gs:.3f} | {ratio} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--scenes", type=int, help="calibration scenes (default 300; --quick 2)")
    parser.add_argument("--quick", action="store_true", help="small preset, 2 scenes: a check")
    parser.add_argument(
        "--jobs", type=int, default=min(os.cpu_count() or 1, 16), help="scene processes"
    )
    parser.add_argument(
        "--files",
        help="comma-separated file names to compile (default: all five); merged into the "
        "stored run of the same device and scene count",
    )
    parser.add_argument("--json", type=Path, default=HERE / "bevfusion_full_gpu.json")
    parser.add_argument("--md", type=Path, default=HERE / "bevfusion_full_gpu.md")
    args = parser.parse_args(argv)
    from bevcc.device import DeviceError, resolve_device

    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        parser.exit(2, f"bevfusion_full_gpu: {exc}\n")
    scenes = args.scenes or (2 if args.quick else 300)
    if scenes < 1:
        parser.exit(2, f"bevfusion_full_gpu: --scenes {scenes}: give at least 1\n")
    only = None
    if args.files:
        only = [f.strip() for f in args.files.split(",") if f.strip()]
        unknown = sorted(set(only) - set(pipelines(scenes)))
        if unknown or not only:
            parser.exit(
                2,
                f"bevfusion_full_gpu: --files {args.files}: unknown {', '.join(unknown) or 'none'}"
                f"; the files are {', '.join(pipelines(scenes))}\n",
            )
    from bevcc.plugins import get_registry

    get_registry()  # the plugin's passes and metrics, bevcc's spconv CPU ops
    key = ("quick " if args.quick else "") + ("cpu" if device == "cpu" else "gpu")
    stored = json.loads(args.json.read_text()) if args.json.is_file() else {}
    earlier = stored.get("runs", {}).get(key)
    this_command = command(sys.argv[1:] if argv is None else argv)
    commands = stored.get("commands", {}).get(key, [])
    commands = [commands] if isinstance(commands, str) else commands

    def publish(run: dict) -> None:
        merged, joined = merge(earlier, copy.deepcopy(run))
        stored.setdefault("runs", {})[key] = merged
        stored.setdefault("commands", {})[key] = (
            [*commands, this_command] if joined else this_command
        )
        _write(args.json, json.dumps(stored, indent=2) + "\n")
        _write(args.md, render(stored["runs"], stored["commands"]))

    measure("small" if args.quick else "full", scenes, device, args.jobs, only, publish)
    sys.stdout.write(render({key: stored["runs"][key]}, stored["commands"]))
    return 0


def _short(step: str) -> str:
    """A step's pass word: `fx(qdq_insert{...})` -> `qdq_insert`, `export` -> `export`."""
    return step.partition("(")[2].partition("{")[0].rstrip(")") or step


def command(argv: list[str]) -> str:
    """The command line as the page shows it: where the JSON and page went is no part of it."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--json", "--md"):
            skip = True
        elif not arg.startswith(("--json=", "--md=")):
            shown.append(arg)
    return " ".join(["python benchmarks/bevfusion_full_gpu.py", *shown])


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    partial.replace(path)  # whole files only


if __name__ == "__main__":
    sys.exit(main())
