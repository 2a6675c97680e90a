"""sensitivity_disable: a planted sensitive layer is found, ranked first and kept float; the
table repeats run to run and across 2 torch.distributed ranks; interrupted runs resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

import bevcc
from bevcc.errors import BevccError
from bevcc.lint.checks import lint_model
from bevcc.reference.planted import calibration_batches, planted
from bevcc.testing import scaled_timeout
from tests.conftest import run_bevcc

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "qdq_insert,quantizer_unify"


def run(registry, options, output=None, calib=True):
    return bevcc.compile(
        planted(),
        calib=calibration_batches() if calib else None,
        pipeline=f"fx({PREFIX},sensitivity_disable{{{options}}})",
        output=output,
        registry=registry,
    )


def test_planted_layer_is_ranked_first_and_exactly_it_stays_float(tmp_path, registry):
    result = run(registry, "min_sqnr_db=30", output=tmp_path / "model.pt")
    stats = result.records[-1].stats
    table = stats["table"]
    ranked = sorted(table, key=lambda name: table[name]["alone_quantized"])
    assert ranked[0] == "probe"
    assert stats["disabled"] == ["probe"]
    assert stats["all_int8"] < 30 <= stats["final"]
    # SQNR is measured against the float model: it is the reference, with no value of its own
    assert (stats["float"], stats["target"], stats["goal"]) == (None, 30, "min_sqnr_db=30")
    assert result.records[-1].report[1].strip() == (
        f"sqnr vs the float model: float (reference), all INT8 {stats['all_int8']:.4g}, "
        f"final {stats['final']:.4g}; target >= 30 (min_sqnr_db=30)"
    )
    # keeping it float helps more than keeping any other layer float
    assert max(table, key=lambda name: table[name]["alone_float"]) == "probe"
    probe = result.ir.module.get_submodule("probe")
    assert not probe.weight_quantizer.enabled
    # the exported file leaves exactly that conv float
    exported = bevcc.compile(result.ir, pipeline="export", registry=registry).ir.to_model()
    assert lint_model(exported).float_layers == ["/probe/Conv"]


def test_report_files_and_the_disable_list_round_trip(tmp_path, registry):
    run(registry, "top_k=1", output=tmp_path / "model.pt")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "disable_list.json",
        "model.pt",
        "sensitivity.json",
        "sensitivity.jsonl",
        "sensitivity.md",
        "sensitivity.png",
    ]
    assert (tmp_path / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "sensitivity.json").read_text())
    assert [row["decision"] for row in report["units"]] == ["int8", "int8", "float", "int8"]
    assert abs(sum(row["mac_share"] for row in report["units"]) - 1) < 1e-9
    assert "| probe | probe |" in (tmp_path / "sensitivity.md").read_text()
    # a later compile applies the list without measuring (no evaluation data needed)
    listed = tmp_path / "disable_list.json"
    again = bevcc.compile(
        planted(),
        calib=calibration_batches(),
        registry=registry,
        pipeline=f"fx({PREFIX},sensitivity_disable{{list={listed}}})",
    )
    assert again.records[-1].stats["disabled"] == ["probe"]
    assert "table" not in again.records[-1].stats or again.records[-1].stats["table"] == {}


def test_same_seed_same_table(registry):
    first = run(registry, "top_k=1").records[-1].stats["table"]
    second = run(registry, "top_k=1").records[-1].stats["table"]
    assert first == second


def test_two_gloo_ranks_give_the_table_of_one_process(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    tables = []
    for ranks, port in ((1, 29611), (2, 29612)):
        out = tmp_path / f"ranks{ranks}.json"
        proc = subprocess.run(
            [
                str(torchrun),
                "--nproc_per_node",
                str(ranks),
                "--master_port",
                str(port),
                str(ROOT / "tests/workers/sensitivity_ranks.py"),
                str(out),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=scaled_timeout(300),  # a rank left waiting for its peer would wait 30 min
            check=False,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        tables.append(json.loads(out.read_text()))
    assert tables[0] == tables[1]  # table, decision and the calibrated amax (merged by max)
    assert tables[0]["disabled"] == ["probe"]


@pytest.mark.parametrize(
    "patterns, disabled, unused",
    [
        ('"pro*"', ["probe"], []),
        ('"probe, head"', ["probe", "head"], []),
        ('"rob"', [], ["rob"]),  # never a substring match
        ('"nothing*"', [], ["nothing*"]),
    ],
)
def test_explicit_names_and_globs(registry, patterns, disabled, unused, recwarn):
    stats = run(registry, f"disable={patterns}").records[-1].stats
    assert [str(w.message) for w in recwarn if "matches no" in str(w.message)] == [
        f"sensitivity_disable: '{p}' matches no quantized unit" for p in unused
    ]
    assert stats["disabled"] == disabled and stats["unused"] == unused


def test_an_interrupted_run_resumes_without_redoing_finished_units(tmp_path, registry):
    calls = []

    def counting_sqnr(outputs, reference, batches):
        from bevcc.sensitivity.metrics import sqnr_db

        calls.append(1)
        return sqnr_db(outputs, reference, batches)

    registry.add_metric("counted", counting_sqnr)
    results = tmp_path / "partial.jsonl"
    full = run(registry, f"metric=counted,results={results}").records[-1].stats["table"]
    lines = results.read_text().splitlines()
    assert len(lines) == 1 + 8  # header + 4 units x 2 modes
    results.write_text("\n".join(lines[:4]) + '\n{"unit": "bo')  # killed mid-write
    calls.clear()
    resumed = run(registry, f"metric=counted,results={results}").records[-1].stats["table"]
    assert resumed == full
    # the 5 missing evaluations, the float reference score, all-INT8 and final scores
    assert len(calls) == 5 + 3


def test_task_metric_with_labels_and_a_relative_drop_budget(registry):
    from bevcc.reference.digits import calibration_batches as digit_batches
    from bevcc.reference.digits import trained_digits_net

    model, example, (train_x, train_y), _ = trained_digits_net()

    def accuracy(outputs, reference, batches):
        right = sum(
            int((out[0].argmax(1).numpy() == batch["label"]).sum())
            for out, batch in zip(outputs, batches, strict=True)
        )
        return right / sum(len(batch["label"]) for batch in batches)

    registry.add_metric("accuracy", accuracy)
    batches = digit_batches(train_x)
    for i, batch in enumerate(batches):
        batch["label"] = train_y[i * 32 : (i + 1) * 32]
    result = bevcc.compile(
        (model, example),
        calib=batches,
        registry=registry,
        pipeline=("fx(bn_fold,qdq_insert,sensitivity_disable{metric=accuracy,max_drop=0.01})"),
    )
    stats = result.records[-1].stats
    assert stats["metric"] == "accuracy" and stats["final"] >= 0.98
    # the float model's accuracy on the evaluation batches, computed here from the model itself
    with torch.no_grad():
        float_outputs = [(model(torch.from_numpy(b["image"])),) for b in batches[:4]]
    float_accuracy = accuracy(float_outputs, None, batches[:4])
    assert stats["float"] == pytest.approx(float_accuracy)
    assert stats["target"] == pytest.approx(0.99 * float_accuracy)
    assert stats["goal"] == "max_drop=0.01"
    assert result.records[-1].report[1].strip() == (
        f"accuracy: float {float_accuracy:.4g}, all INT8 {stats['all_int8']:.4g}, final "
        f"{stats['final']:.4g}; target >= {0.99 * float_accuracy:.4g} (max_drop=0.01)"
    )
    assert stats["disabled"] == []  # INT8 already within 1% of float on this model
    assert set(stats["table"]) == {"stem.0", "body.0", "body.3", "classifier"}


def test_two_budgets_or_no_data_are_usage_errors(registry):
    with pytest.raises(BevccError, match="give one of top_k, min_sqnr_db, max_drop"):
        run(registry, "top_k=1,min_sqnr_db=20")
    with pytest.raises(BevccError, match="unknown metric 'map'"):
        run(registry, "metric=map")


def test_cli_sensitivity_and_compile_write_the_report(tmp_path):
    out = tmp_path / "sens"
    proc = run_bevcc(
        "sensitivity",
        "bevcc.reference.planted:planted",
        "--calib",
        "bevcc.reference.planted:calibration_batches",
        "--min-sqnr-db",
        "30",
        "-o",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "4 units; kept float: probe"
    assert json.loads((out / "disable_list.json").read_text())["disable"] == ["probe"]
    model_out = tmp_path / "c" / "planted.onnx"
    proc = run_bevcc(
        "compile",
        "bevcc.reference.planted:planted",
        "--calib",
        "bevcc.reference.planted:calibration_batches",
        "--pipeline",
        f"fx({PREFIX},sensitivity_disable{{top_k=1}}),export",
        "-o",
        model_out,
    )
    assert proc.returncode == 0, proc.stderr
    assert (model_out.parent / "sensitivity.md").exists()
    assert lint_model(onnx.load(model_out)).float_layers == ["/probe/Conv"]


def test_sparse_convs_are_units_too(registry):
    from bevcc.reference.tiny_sparse import random_voxels, tiny_sparse

    model, example = tiny_sparse()
    calib = [
        dict(zip(["voxel_features", "coors"], [t.numpy() for t in random_voxels(s)], strict=True))
        for s in range(1, 4)
    ]
    result = bevcc.compile(
        (model, example),
        calib=calib,
        registry=registry,
        pipeline=("fx(bn_fold,sparse_conv_quant,quantizer_unify,sensitivity_disable{top_k=1})"),
    )
    stats = result.records[-1].stats
    # the residual Add's identity input shares block.conv1's quantizer, and an Add runs INT8 as
    # a whole (libspconv has one precision per Add), so its other input joins that unit too
    assert set(stats["table"]) == {"block.conv1", "block.conv2", "down.0", "up.0"}
    assert len(stats["disabled"]) == 1
    # sparse layers count no MACs, so the report gives no MAC share rather than 0% per unit
    from bevcc.sensitivity.report import markdown, rows
    from bevcc.sensitivity.units import find_units

    table_rows = rows(find_units(result.ir), {}, set())
    assert [row["mac_share"] for row in table_rows] == [None] * 4
    assert markdown("sqnr", {}, table_rows).splitlines()[-1] == "| up.0 | up.0 | - | - | - | int8 |"
