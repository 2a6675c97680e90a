"""The README's commands run as written (minus the setup step) and emit lint-clean files."""

import itertools
import json
import re

import onnx
import pytest

from bevcc.lint.checks import lint_model
from tests.conftest import PROGRESS_LINE, run_bevcc

FILES = {
    "camera.backbone": "int8",
    "camera.vtransform": "fp16",
    "lidar.backbone.xyz": "libspconv",
    "fuser": "int8",
    "head.bbox": "fp16",
}


@pytest.fixture(scope="module")
def main_job(readme_main_job):
    """The README's main command, run as written (the session fixture in the root conftest.py,
    shared with the bevfusion plugin's deployed-files tests)."""
    return readme_main_job


def test_main_job_writes_the_five_files_and_the_report(main_job):
    out, proc = main_job
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{name}.onnx" for name in FILES]
        + ["report.json", "report.md", "build_trt_engines.sh", "reports", "fp16"]
    )
    for position, name in enumerate(FILES, 1):  # progress, file by file
        assert f"[{position}/5] {name}: " in proc.stderr
    script = (out / "build_trt_engines.sh").read_text()
    assert script.count("--onnx=") == 4 and "lidar.backbone.xyz.onnx" in script


def test_main_job_shows_progress_at_least_every_ten_seconds(main_job):
    """The fixture runs it with BEVCC_PROGRESS=lines, as a CI log or a container without a
    terminal would with --progress: from the start of the command to its end, no 10 s pass
    without a line, and the lines name the file, the pass and the loop it is in."""
    _, proc = main_job
    lines = [m.groups() for m in map(PROGRESS_LINE.match, proc.stderr.splitlines()) if m]
    times = [0.0] + [float(t) for t, _ in lines] + [proc.wall_seconds]
    gaps = [(b - a, b) for a, b in itertools.pairwise(times)]
    assert max(gaps)[0] <= 10.0, f"{max(gaps)[0]:.1f} s without a line before +{max(gaps)[1]}s"
    texts = [text for _, text in lines]
    for position, name in ((1, "camera.backbone"), (3, "lidar.backbone.xyz"), (4, "fuser")):
        # the files that take minutes (the others may pass between two lines)
        assert any(t.startswith(f"{name} ({position}/5) > fx(") for t in texts), name
    assert any("> sensitivity: " in t and ", ETA " in t for t in texts)


def test_main_job_report_accounts_for_every_second(main_job):
    out, proc = main_job
    for report in (out / "report.json", out / "fp16" / "report.json"):
        data = json.loads(report.read_text())
        assert abs(sum(data["time"].values()) - data["seconds"]) <= 0.01
        for entry in data["files"]:
            time = entry["time"]
            assert abs(sum(time.values()) - entry["seconds"]) <= 0.01, entry["name"]
            assert time["other"] <= 0.01 * entry["seconds"] + 0.1, (entry["name"], time)
    # the command's own total: both sets and the setup, by phase
    total = re.search(r"^time: ([\d.]+) s \(load ([\d.]+) s, .*\)$", proc.stderr, re.MULTILINE)
    assert total and float(total.group(1)) <= proc.wall_seconds


def test_main_job_files_are_lint_clean(main_job):
    out, _ = main_job
    report = {f["name"]: f for f in json.loads((out / "report.json").read_text())["files"]}
    assert list(report) == list(FILES)
    for name, precision in FILES.items():
        lint = lint_model(onnx.load(out / f"{name}.onnx"), name)
        assert lint.errors == 0, (name, lint.problems)
        assert report[name]["precision"] == precision
        if precision == "int8":
            assert lint.reformats == 0 and lint.qdq_pairs > 0
            assert report[name]["qdq"]["quantize_linear"] == lint.qdq_pairs
        elif precision == "fp16":
            assert lint.qdq_pairs == 0
    # the sensitivity pass ran on both INT8 files and its decision is in the report
    assert report["camera.backbone"]["sensitivity"]["metric"] == "sqnr"
    assert report["fuser"]["sensitivity"]["metric"] == "bevfusion_map"
    assert (out / "reports" / "camera.backbone" / "sensitivity.md").is_file()


def test_main_job_files_are_strongly_typed_fp16_but_for_the_fp32_layers_the_report_names(
    main_job,
):
    """Both sets, as TensorRT 11 builds them (10 with --stronglyTyped): each compute layer runs
    INT8 or fp16, or fp32 for a reason the file records and report.json repeats; lint finds no
    typing error; the build script carries no precision flag."""
    out, _ = main_job
    for directory in (out, out / "fp16"):
        report = {
            f["name"]: f for f in json.loads((directory / "report.json").read_text())["files"]
        }
        script = (directory / "build_trt_engines.sh").read_text()
        assert not re.search(r"--(int8|fp16|best|calib)\b", script)
        for name, precision in FILES.items():
            if precision == "libspconv":
                continue
            typing = lint_model(onnx.load(directory / f"{name}.onnx"), name).typing
            assert typing.declared == "fp16" and typing.errors == [], (directory, name)
            assert not typing.weakly_typed
            precisions = {layer.precision for layer in typing.layers}
            quantized = precision == "int8" and directory == out
            assert precisions <= ({"int8", "fp16", "fp32"} if quantized else {"fp16", "fp32"})
            assert ("int8" in precisions) == quantized, (directory, name)
            fp32 = {
                layer.node: layer.reason for layer in typing.layers if layer.precision == "fp32"
            }
            assert all(fp32.values()), (directory, name, fp32)
            reported = {
                e["onnx"]: e["fp32_reason"]
                for e in report[name]["layers"]
                if e["precision"] == "fp32"
            }
            assert reported == fp32, (directory, name)


def test_main_job_report_names_layers_one_way_and_gives_every_value(main_job):
    """report.md as a perception engineer reads it: the lidar file's INT8 layers counted from its
    libspconv attributes, layers kept float named by the module path the units use (with the
    ONNX name beside it), the task metric's float value next to all-INT8 and final."""
    out, _ = main_job
    text = (out / "report.md").read_text()
    report = {f["name"]: f for f in json.loads((out / "report.json").read_text())["files"]}
    lidar = onnx.load(out / "lidar.backbone.xyz.onnx")
    precisions = [
        next(a.s for a in node.attribute if a.name == "precision")
        for node in lidar.graph.node
        if node.op_type == "SparseConvolution"
    ]
    assert (
        f"| lidar.backbone.xyz.onnx | libspconv | {precisions.count(b'int8')} of 21 | - |" in text
    )
    for name in ("camera.backbone", "lidar.backbone.xyz"):
        floats = {e["module"]: e for e in report[name]["layers"] if e["precision"] != "int8"}
        kept = report[name]["kept_float_layers"]
        assert list(kept) == report[name]["kept_float"]
        for unit, layers in kept.items():
            for layer in layers:  # the units' names are the layers' module paths
                row = f"| {layer} | `{floats[layer]['onnx']}` | "
                assert row in text and f"| FP16 | kept float (unit {unit}) |" in text, layer
    fuser = report["fuser"]["sensitivity"]
    assert fuser["float"] is not None and fuser["goal"] == "max_drop=0.005"
    assert (
        f"- bevfusion_map: float {fuser['float']:.4g}, all INT8 {fuser['all_int8']:.4g}, "
        f"final {fuser['final']:.4g}; target >= {fuser['target']:.4g} (max_drop=0.005)"
    ) in text
    for name in ("camera.backbone", "lidar.backbone.xyz", "fuser"):
        macs = report[name]["macs"]
        assert macs["int8"] + macs["fp16"] == macs["total"] > 0 and macs["fp32"] == 0, name


def test_single_model_example_compiles_tiny_cnn_to_int8(tmp_path, readme_commands):
    args = readme_commands(r"\n\.venv/bin/bevcc (compile tiny_cnn .+)")
    out = tmp_path / "main.onnx"
    args[args.index("-o") + 1] = str(out)
    proc = run_bevcc(*args)
    assert proc.returncode == 0, proc.stderr
    report = lint_model(onnx.load(out))
    assert (report.qdq_pairs, report.reformats, report.problems) == (17, 0, [])
    assert report.int8_mac_share == 1.0
