"""onnx `sensitivity_disable` on Q/DQ files: units are the scale domains, disabling removes
whole domains (lint stays clean), budgets are checked against onnxruntime runs made here, and
the ranking agrees with the FX pass on tiny_cnn.

Inputs: the onnx package's light SqueezeNet (seeded weights, static batch 1x3x224x224), tiny_cnn
exported to ONNX, and tiny_cnn quantized by onnxruntime's own quantize_static (a foreign file).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import bevcc
from bevcc.cli import main
from bevcc.errors import BevccError
from bevcc.lint.checks import lint_model
from bevcc.reference.tiny_cnn import calibration_batches, tiny_cnn
from bevcc.sensitivity.metrics import sqnr_db
from bevcc.sensitivity.onnx_strip import strip
from bevcc.sensitivity.onnx_units import find_units
from bevcc.trt.domains import QdqGraph
from tests.zoo_models import seeded_model

PREFIX = "bn_fold,qdq_insert,quantizer_unify"
# tiny_cnn's units: FX module name -> the exported ONNX node that names the same unit
FX_TO_ONNX = {
    "stem.0": "/stem/stem.0/Conv",
    "block.conv1.0": "/block/conv1/conv1.0/Conv",
    "block.conv2": "/block/conv2/Conv",
    "down.0": "/down/down.0/Conv",
    "up": "/up/ConvTranspose",
    "fuse.0": "/fuse/fuse.0/Conv",
    "head": "/head/Conv",
}


def _run(model, feeds: list[dict]) -> list[np.ndarray]:
    """First output per feed, by onnxruntime with optimizations off (graph as written)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return [session.run(None, feed)[0] for feed in feeds]


def _sqnr(outputs, reference) -> float:
    signal = sum(float((r.astype(np.float64) ** 2).sum()) for r in reference)
    noise = sum(
        float(((o.astype(np.float64) - r) ** 2).sum())
        for o, r in zip(outputs, reference, strict=True)
    )
    return 10 * np.log10(signal / noise) if noise else float("inf")


def _count(model: onnx.ModelProto, op: str) -> int:
    return sum(n.op_type == op for n in model.graph.node)


@pytest.fixture(scope="module")
def squeezenet(tmp_path_factory):
    """(float model, Q/DQ file, calibration batches: 3 samples in one array)."""
    directory = tmp_path_factory.mktemp("squeezenet")
    float_model = seeded_model("light_squeezenet")
    calib = [
        {"data_0": np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)}
    ]
    path = directory / "squeezenet.int8.onnx"
    bevcc.compile(float_model, calib=calib, pipeline=f"onnx({PREFIX})", output=path)
    return float_model, path, calib


@pytest.fixture(scope="module")
def squeezenet_top3(squeezenet, tmp_path_factory):
    _, path, calib = squeezenet
    out = tmp_path_factory.mktemp("top3") / "model.onnx"
    results = out.parent.parent / "squeezenet.jsonl"  # shared: later runs resume from it
    result = bevcc.compile(
        str(path),
        calib=calib,
        output=out,
        pipeline=(f"onnx(sensitivity_disable{{top_k=3,results={results}}})"),
    )
    return result, out


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """tiny_cnn exported to a float ONNX (static batch 1), and its Q/DQ file (onnx pipeline)."""
    directory = tmp_path_factory.mktemp("tiny")
    model, inputs = tiny_cnn()
    float_path = directory / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            inputs,
            str(float_path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["output"],
        )
    qdq_path = directory / "tiny.int8.onnx"
    bevcc.compile(
        str(float_path), calib=calibration_batches(), output=qdq_path, pipeline=f"onnx({PREFIX})"
    )
    return float_path, qdq_path


@pytest.mark.parametrize("which", ["squeezenet", "tiny"])
def test_units_are_the_scale_domains_and_partition_the_qdq_nodes(which, squeezenet, tiny_files):
    if which == "squeezenet":
        float_model, path, calib = squeezenet
        feeds = [{"data_0": calib[0]["data_0"][i : i + 1]} for i in range(3)]
        reference = _run(float_model, feeds)
    else:
        path = tiny_files[1]
        model, _ = tiny_cnn()
        feeds = [{"x": calibration_batches()[0]["x"][i : i + 1]} for i in range(4)]
        with torch.no_grad():
            reference = [model(torch.from_numpy(f["x"])).numpy() for f in feeds]
    model = onnx.load(path)
    units = find_units(model)
    assert (
        len(units) == len(QdqGraph(model).domain_scales()) == {"squeezenet": 18, "tiny": 7}[which]
    )
    qdq = sorted(
        n.output[0] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
    )
    assert sorted(o for u in units for o in u.outputs) == qdq  # each Q/DQ in exactly one unit
    # the float reference (every unit removed) computes the float model
    float_file = strip(model, units)
    assert _count(float_file, "QuantizeLinear") == _count(float_file, "DequantizeLinear") == 0
    assert lint_model(float_file).total_macs == lint_model(model).total_macs
    assert _sqnr(_run(float_file, feeds), reference) > 90


def test_top_k_removes_exactly_k_domains_and_the_file_stays_lint_clean(squeezenet, squeezenet_top3):
    _, path, _ = squeezenet
    result, out = squeezenet_top3
    record = result.records[-1]
    stats = record.stats
    before, after = onnx.load(path), onnx.load(out)
    units = {u.name: u for u in find_units(before)}
    table = stats["table"]
    ranked = sorted(table, key=lambda name: table[name]["alone_quantized"])
    assert stats["disabled"] == ranked[:3] and record.modified
    assert len(QdqGraph(after).domain_scales()) == len(QdqGraph(before).domain_scales()) - 3
    gone = {o for name in ranked[:3] for o in units[name].outputs}
    removed_q = sum(
        n.op_type == "QuantizeLinear" and n.output[0] in gone for n in before.graph.node
    )
    assert removed_q >= 3  # at least each domain's own Q (and the layers' weight Qs)
    assert _count(after, "QuantizeLinear") == _count(before, "QuantizeLinear") - removed_q
    report = lint_model(after)
    assert (report.reformats, report.problems) == (0, [])
    assert report.float_layers == sorted(
        layer for name in ranked[:3] for layer in units[name].layers
    )
    rows = json.loads((out.parent / "sensitivity.json").read_text())["units"]
    assert [r["unit"] for r in rows if r["decision"] == "float"] == sorted(
        ranked[:3], key=list(units).index
    )
    assert (out.parent / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"


def test_the_disable_list_round_trips_byte_for_byte(squeezenet, squeezenet_top3, tmp_path):
    _, path, _ = squeezenet
    _, out = squeezenet_top3
    listed = out.parent / "disable_list.json"
    again = bevcc.compile(
        str(path),
        output=tmp_path / "model.onnx",
        pipeline=f"onnx(sensitivity_disable{{list={listed}}})",
    )
    assert again.records[-1].stats["table"] == {}  # applied without measuring, without data
    assert (tmp_path / "disable_list.json").read_bytes() == listed.read_bytes()
    assert (tmp_path / "model.onnx").read_bytes() == out.read_bytes()


def test_min_sqnr_db_holds_when_measured_here_and_not_one_unit_earlier(
    squeezenet, squeezenet_top3, tmp_path
):
    float_model, path, calib = squeezenet
    all_int8 = squeezenet_top3[0].records[-1].stats["all_int8"]
    results = squeezenet_top3[1].parent.parent / "squeezenet.jsonl"
    target = round(all_int8 + 2.0, 1)
    result = bevcc.compile(
        str(path),
        calib=calib,
        output=tmp_path / "model.onnx",
        pipeline=(f"onnx(sensitivity_disable{{min_sqnr_db={target},results={results}}})"),
    )
    stats = result.records[-1].stats
    feeds = [{"data_0": calib[0]["data_0"][i : i + 1]} for i in range(3)]
    reference = _run(float_model, feeds)
    assert _sqnr(_run(path, feeds), reference) == pytest.approx(all_int8, abs=0.01)
    measured = _sqnr(_run(tmp_path / "model.onnx", feeds), reference)
    assert measured >= target and measured == pytest.approx(stats["final"], abs=0.01)
    assert len(stats["disabled"]) >= 2
    fewer = ",".join(stats["disabled"][:-1])
    bevcc.compile(
        str(path),
        output=tmp_path / "fewer" / "model.onnx",
        pipeline=f'onnx(sensitivity_disable{{disable="{fewer}"}})',
    )
    assert _sqnr(_run(tmp_path / "fewer" / "model.onnx", feeds), reference) < target


def test_onnx_ranking_agrees_with_fx_on_tiny_cnn(tiny_files):
    fx = (
        bevcc.compile(
            "tiny_cnn",
            calib=calibration_batches(),
            pipeline=(f"fx({PREFIX},sensitivity_disable{{eval_batches=4}})"),
        )
        .records[-1]
        .stats["table"]
    )
    # the file's batch is 1: 16 batches of it are the same 16 samples as FX's 4 batches of 4
    result = bevcc.compile(
        str(tiny_files[0]),
        calib=calibration_batches(),
        pipeline=(f"onnx({PREFIX},sensitivity_disable{{eval_batches=16}})"),
    )
    table = result.records[-1].stats["table"]
    units = find_units(result.ir.to_model())
    assert [u.name for u in units] == list(FX_TO_ONNX.values())
    assert units[3].layers == ["/down/down.0/Conv", "/lateral/Conv"]  # one input domain
    assert [u.macs for u in units] == [442368, 2359296, 2359296, 1441792, 524288, 524288, 65536]
    fx_order = sorted(fx, key=lambda name: fx[name]["alone_quantized"])
    onnx_order = sorted(table, key=lambda name: table[name]["alone_quantized"])
    assert [FX_TO_ONNX[name] for name in fx_order] == onnx_order
    for name, values in fx.items():  # same scales (max calibration), same samples
        for mode, value in values.items():
            assert table[FX_TO_ONNX[name]][mode] == pytest.approx(value, abs=0.3)


def test_resume_metric_contract_and_an_honest_modified_claim(tiny_files, tmp_path, registry):
    seen = []

    def counted(outputs, reference, batches):
        seen.append([type(t) for out in outputs for t in out])
        return sqnr_db(outputs, reference, batches)

    registry.add_metric("counted", counted)
    results = tmp_path / "partial.jsonl"
    pipeline = f"onnx(sensitivity_disable{{metric=counted,results={results}}})"
    first = bevcc.compile(
        str(tiny_files[1]), calib=calibration_batches(), registry=registry, pipeline=pipeline
    )
    assert not first.records[-1].modified  # measured only: nothing removed
    assert first.ir.to_model().SerializeToString() == tiny_files[1].read_bytes()
    assert {t for types in seen for t in types} == {torch.Tensor}  # as on the FX path
    lines = results.read_text().splitlines()
    assert len(lines) == 1 + 14  # header + 7 units x 2 modes
    results.write_text("\n".join(lines[:6]) + '\n{"unit": "/he')  # killed mid-write
    seen.clear()
    again = bevcc.compile(
        str(tiny_files[1]), calib=calibration_batches(), registry=registry, pipeline=pipeline
    )
    assert again.records[-1].stats["table"] == first.records[-1].stats["table"]
    assert len(seen) == 1 + 9 + 1  # the float score, 9 missing evaluations, all-INT8


def test_max_drop_by_cosine_holds_when_measured_here(tiny_files, tmp_path):
    model, _ = tiny_cnn()
    batches = calibration_batches()
    out = tmp_path / "model.onnx"
    result = bevcc.compile(
        str(tiny_files[1]),
        calib=batches,
        output=out,
        pipeline=("onnx(sensitivity_disable{metric=cosine,max_drop=0.00002,eval_batches=8})"),
    )
    stats = result.records[-1].stats
    feeds = [{"x": batches[0]["x"][i : i + 1]} for i in range(4)] + [
        {"x": batches[1]["x"][i : i + 1]} for i in range(4)
    ]
    with torch.no_grad():
        reference = [model(torch.from_numpy(f["x"])).numpy().ravel() for f in feeds]
    cosines = [
        float(np.dot(o.ravel(), r) / np.linalg.norm(o) / np.linalg.norm(r))
        for o, r in zip(_run(out, feeds), reference, strict=True)
    ]
    assert stats["all_int8"] < 1 - 0.00002 <= stats["final"]
    assert np.mean(cosines) == pytest.approx(stats["final"], abs=1e-6)
    assert 0 < len(stats["disabled"]) < 7


def test_a_foreign_file_with_stored_int8_weights(tiny_files, tmp_path):
    """onnxruntime's quantize_static stores weights as int8 initializers read by a DQ alone
    (and biases as int32): disabling turns them back into float initializers."""
    # In a fresh interpreter: modelopt, once any earlier test imported it, patches
    # onnxruntime's quantizer in-process, and quantize_static then fails on tiny_cnn's input.
    import subprocess
    import sys

    stacked = np.concatenate([b["x"] for b in calibration_batches()[:2]])
    np.save(tmp_path / "samples.npy", stacked)
    samples = [{"x": stacked[i : i + 1]} for i in range(len(stacked))]
    path = tmp_path / "ort.onnx"
    script = (
        "import sys, numpy as np\n"
        "from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,\n"
        "                                      quantize_static)\n"
        "samples = np.load(sys.argv[3])\n"
        "class Reader(CalibrationDataReader):\n"
        "    def __init__(self):\n"
        "        self.it = iter([{'x': samples[i:i + 1]} for i in range(len(samples))])\n"
        "    def get_next(self):\n"
        "        return next(self.it, None)\n"
        "quantize_static(sys.argv[1], sys.argv[2], Reader(), quant_format=QuantFormat.QDQ,\n"
        "                per_channel=True, activation_type=QuantType.QInt8,\n"
        "                weight_type=QuantType.QInt8,\n"
        "                extra_options={'ActivationSymmetric': True, 'WeightSymmetric': True})\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(tiny_files[0]),
            str(path),
            str(tmp_path / "samples.npy"),
        ],
        check=True,
        capture_output=True,  # no time limit: one process computing, waiting on no other
    )
    model = onnx.load(path)
    units = find_units(model)
    # the residual Add reads two quantized inputs: their domains are one unit, as on FX
    assert (len(units), len(QdqGraph(model).domain_scales())) == (15, 16)
    out = tmp_path / "out" / "model.onnx"
    result = bevcc.compile(
        str(path),
        calib=samples,
        output=out,
        pipeline=('onnx(sensitivity_disable{disable="/stem/stem.0/Conv",top_k=1})'),
    )
    disabled = result.records[-1].stats["disabled"]
    assert len(disabled) == 2 and disabled[0] == "/stem/stem.0/Conv"
    chosen = [u for u in units if u.name in disabled]
    gone = {name for unit in chosen for name in unit.quantizers}
    before, after = lint_model(model), lint_model(onnx.load(out))
    assert after.qdq_pairs == before.qdq_pairs - sum(q.endswith("_QuantizeLinear") for q in gone)
    # exactly the removed nodes' encoding findings go (ORT's int32 bias DQs are among them
    # when a layer's unit goes); the file gets no new Reformat
    assert after.problems == [p for p in before.problems if p.split(": ", 1)[0] not in gone]
    assert len(after.problems) < len(before.problems)
    assert after.reformats <= before.reformats
    floated = strip(model, units)
    assert _count(floated, "DequantizeLinear") == 0
    # float reference = the stored weights dequantized: near, not equal to, the float model
    reference = _run(tiny_files[0], samples)
    assert 40 < _sqnr(_run(floated, samples), reference) < 90


def test_cli_on_an_onnx_file_and_on_a_file_already_qdq(tiny_files, tmp_path, capsys):
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.concatenate([b["x"] for b in calibration_batches()[:2]]))
    # in process (bevcc.cli.main), to keep the test fast; test_sensitivity runs the script
    code = main(
        [
            "sensitivity",
            str(tiny_files[0]),
            "--calib",
            str(data),
            "--top-k",
            "1",
            "-o",
            str(tmp_path / "a"),
        ]
    )
    first = capsys.readouterr()
    assert code == 0, first.err
    table = json.loads((tmp_path / "a" / "sensitivity.json").read_text())["units"]
    worst = min(table, key=lambda row: row["alone_quantized"])["unit"]
    assert first.out.splitlines()[0] == f"7 units; kept float: {worst}"
    model = onnx.load(tmp_path / "a" / "model.onnx")  # onnx pipeline: an ONNX file comes out
    assert lint_model(model).errors == 0 and len(QdqGraph(model).domain_scales()) == 6
    code = main(
        [
            "sensitivity",
            str(tmp_path / "a" / "model.onnx"),
            "--prefix",
            "",
            "--calib",
            str(data),
            "--top-k",
            "1",
            "-o",
            str(tmp_path / "b"),
        ]
    )
    second = capsys.readouterr()
    assert code == 0, second.err
    assert second.out.splitlines()[0].startswith("6 units; kept float: /")


def test_batches_without_the_model_input_are_one_error_and_write_nothing(tiny_files, tmp_path):
    out = tmp_path / "model.onnx"
    with pytest.raises(BevccError) as info:
        bevcc.compile(
            str(tiny_files[1]),
            calib=[{"image": np.zeros((1, 3, 32, 32), "f4")}],
            output=out,
            pipeline="onnx(sensitivity_disable{top_k=1})",
        )
    message = str(info.value)
    assert "\n" not in message
    assert "calibration batch 0 of the given batches lacks input(s) x; it has image" in message
    assert list(tmp_path.iterdir()) == []
