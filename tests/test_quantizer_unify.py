"""quantizer_unify on both IRs and `bevcc lint`: predicted Reformats exactly known before, zero
after, onnxruntime parity kept; lint on onnxruntime's and modelopt's quantizations."""

import json

import numpy as np
import onnx
import pytest
import torch

import bevcc
from bevcc.lint.checks import lint_model
from bevcc.quant.quantizer import TensorQuantizer
from bevcc.reference.fpn_residual import calibration_batches, fpn_residual
from tests.conftest import run_bevcc
from tests.test_qdq_insert import _dq_inputs, assert_matches_fake_quant

PERCENTILE = "qdq_insert{calibrator=histogram:percentile}"


@pytest.fixture
def fpn():
    return fpn_residual(), calibration_batches()


def compile_file(path, model, calib, registry, fx_passes):
    return bevcc.compile(
        model,
        pipeline=f"fx({fx_passes}),export{{dynamic_batch=true}}",
        calib=calib,
        output=path,
        registry=registry,
    )


def test_fx_unify_takes_predicted_reformats_from_2_to_0_with_parity(
    tmp_path, golden, registry, fpn
):
    model, calib = fpn
    before = lint_model(
        onnx.load(compile_file(tmp_path / "a.onnx", model, calib, registry, PERCENTILE).output)
    )
    # x feeds the downsample conv, the Concat and the MaxPool: three percentile scales in one
    # domain, so TensorRT would requantize twice.
    assert before.reformats == 2
    assert [(m.kind, len(m.scales)) for m in before.mismatches] == [("concat", 3)]
    result = compile_file(
        tmp_path / "b.onnx", model, calib, registry, f"{PERCENTILE},quantizer_unify"
    )
    record = result.records[1]
    assert record.stats["inserted"] == {"add": 1, "concat": 2}
    assert (record.stats["quantizers_before"], record.stats["quantizers_after"]) == (8, 6)
    after = lint_model(onnx.load(result.output))
    assert (after.reformats, after.problems, after.qdq_pairs) == (0, [], 17)
    ir = bevcc.compile(
        model, pipeline=f"fx({PERCENTILE},quantizer_unify)", calib=calib, registry=registry
    ).ir
    # one module instance per domain: x's quantizer also serves the Concat inputs, lateral input
    # (through the Concat) and the residual identity shares conv res1's input quantizer
    calls = [
        n.target
        for n in ir.graph.nodes
        if n.op == "call_module" and isinstance(ir.module.get_submodule(n.target), TensorQuantizer)
    ]
    assert len(calls) == 9 and len(set(calls)) == 6
    assert_matches_fake_quant(result.output, ir.module, calib[0], model[0])
    golden("unify_fpn_residual.fx", ir)
    golden("unify_fpn_residual.onnx", result.ir)


def test_shared_add_policy_quantizes_both_inputs_with_one_scale(tmp_path, registry, fpn):
    model, calib = fpn
    result = compile_file(
        tmp_path / "s.onnx", model, calib, registry, f"{PERCENTILE},quantizer_unify{{add=shared}}"
    )
    emitted = onnx.load(result.output)
    add = next(n for n in emitted.graph.node if n.op_type == "Add")
    producers = {o: n for n in emitted.graph.node for o in n.output}
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in emitted.graph.initializer}
    scales = {float(constants[producers[i].input[1]]) for i in add.input}
    assert all(producers[i].op_type == "DequantizeLinear" for i in add.input) and len(scales) == 1
    assert lint_model(emitted).reformats == 0


def test_onnx_unify_on_the_fx_file_matches_fx_unify_with_max(tmp_path, registry, fpn):
    model, calib = fpn
    plain = compile_file(tmp_path / "p.onnx", model, calib, registry, "qdq_insert").output
    fx_unified = compile_file(
        tmp_path / "f.onnx", model, calib, registry, "qdq_insert,quantizer_unify"
    ).output
    result = bevcc.compile(
        str(plain),
        pipeline="onnx(quantizer_unify,check)",
        output=tmp_path / "o.onnx",
        registry=registry,
    )
    assert result.records[0].stats["inserted"] == {"add": 1, "concat": 2}
    a, b = _dq_inputs(onnx.load(fx_unified)), _dq_inputs(onnx.load(tmp_path / "o.onnx"))
    assert a.keys() == b.keys()
    for name in a:
        for (scale_a, axis_a), (scale_b, axis_b) in zip(a[name], b[name], strict=True):
            assert axis_a == axis_b
            np.testing.assert_allclose(scale_a, scale_b, rtol=1e-6, err_msg=name)
    unified = lint_model(onnx.load(tmp_path / "o.onnx"))
    assert (unified.reformats, unified.qdq_pairs) == (0, 17)


def test_onnx_unify_shares_one_initializer_per_domain(tmp_path, registry, fpn):
    model, calib = fpn
    plain = compile_file(tmp_path / "p.onnx", model, calib, registry, PERCENTILE).output
    out = tmp_path / "o.onnx"
    bevcc.compile(str(plain), pipeline="onnx(quantizer_unify)", output=out, registry=registry)
    emitted = onnx.load(out)
    concat = next(n for n in emitted.graph.node if n.op_type == "Concat")
    producers = {o: n for n in emitted.graph.node for o in n.output}
    scale_names = {producers[i].input[1] for i in concat.input}
    lateral_dq = producers[
        next(n for n in emitted.graph.node if n.name == "/lateral/Conv").input[0]
    ]
    assert scale_names == {lateral_dq.input[1]}  # one initializer, not equal copies


# ---- bevcc lint ---------------------------------------------------------------------------------
def test_lint_cli_table_json_and_exit_codes(tmp_path, registry, fpn):
    model, calib = fpn
    bad = compile_file(tmp_path / "bad.onnx", model, calib, registry, PERCENTILE).output
    good = compile_file(
        tmp_path / "good.onnx", model, calib, registry, f"{PERCENTILE},quantizer_unify"
    ).output
    proc = run_bevcc("lint", bad)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert "  predicted Reformats  2" in lines and lines[-1] == "2 error(s)"
    assert any(line.startswith("  concat /Concat: scales ") for line in lines)
    proc = run_bevcc("lint", good, "--json")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert (data["predicted_reformats"], data["errors"], data["qdq_pairs"]) == (0, 0, 17)
    assert data["int8_mac_share"] == 1.0
    proc = run_bevcc("lint", tmp_path / "missing.onnx")
    assert (
        proc.returncode != 0 and proc.stderr.count("\n") == 1 and "no such ONNX file" in proc.stderr
    )


def test_lint_counts_float_layers_in_the_int8_mac_share(tmp_path, registry, fpn):
    model, calib = fpn
    config = tmp_path / "q.toml"
    config.write_text('[[overrides]]\nmatch = "res*"\nenabled = false\n')
    path = compile_file(
        tmp_path / "x.onnx", model, calib, registry, f"qdq_insert{{config={config}}}"
    ).output
    report = lint_model(onnx.load(path))
    assert sorted(report.float_layers) == ["/res1/Conv", "/res2/Conv"]
    share = report.int8_macs / report.total_macs
    assert 0 < share < 1 and report.int8_mac_share == pytest.approx(share)


def _peer_inputs(model, calib, tmp_path, registry):
    float_file = tmp_path / "float.onnx"
    bevcc.compile(model, pipeline="fx(dce),export", output=float_file, registry=registry)
    return float_file, [{"img": c["img"][:1]} for c in calib]


def test_lint_reports_onnxruntime_quantize_static_mismatches(tmp_path, registry, fpn):
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model, calib = fpn
    float_file, batches = _peer_inputs(model, calib, tmp_path, registry)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    out = tmp_path / "ort.onnx"
    quantize_static(
        str(float_file),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    report = lint_model(onnx.load(out))
    print("onnxruntime:", report.to_json())
    assert [(m.kind, len(m.scales)) for m in report.mismatches] == [("concat", 2), ("add", 2)]
    assert report.reformats == 2
    bias = [p for p in report.problems if "on the bias" in p]
    assert len(bias) == 8  # every conv bias is an int32 DQ
    unified = bevcc.compile(
        str(out), pipeline="onnx(quantizer_unify{add=shared})", registry=registry
    ).ir.to_model()
    assert lint_model(unified).reformats == 0


def test_lint_reports_modelopt_onnx_quantization(tmp_path, registry, fpn):
    import modelopt.onnx.quantization as moq  # the dev extra installs modelopt[onnx]

    model, calib = fpn
    float_file, batches = _peer_inputs(model, calib, tmp_path, registry)
    out = tmp_path / "modelopt.onnx"
    moq.quantize(
        str(float_file),
        quantize_mode="int8",
        calibration_method="max",
        calibration_data=np.concatenate([b["img"] for b in batches]),
        output_path=str(out),
        calibration_eps=["cpu"],
    )
    report = lint_model(onnx.load(out))
    print("modelopt:", report.to_json())
    assert report.reformats == 0
    assert report.problems == [
        (
            "up.weight_DequantizeLinear: per-channel axis 1 on the weight of "
            "ConvTranspose /up/ConvTranspose; expected 0"
        )
    ]
    assert report.int8_mac_share < 0.5  # modelopt leaves most of these small convs float


class Movers(torch.nn.Module):
    """x reaches five quantized layers through every data-movement op TensorRT commutes Q/DQ
    through, and nested Concats."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_a, self.conv_b = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 1)
        self.conv_c, self.conv_e = nn.Conv2d(4, 4, 1), nn.Conv2d(8, 4, 1)
        self.lin = nn.Linear(8 * 2 * 2, 4)
        self.fuse = nn.Conv2d(24, 4, 1)

    def forward(self, img):
        F = torch.nn.functional
        x = torch.relu(self.stem(img))
        a = self.conv_a(x)
        b = self.conv_b(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        c = self.conv_c(x[:, :4])
        d = self.lin(torch.flatten(F.max_pool2d(x, 4), 1))
        e = self.conv_e(x.transpose(2, 3))
        nested = torch.cat([torch.cat([x, a], 1), torch.cat([x[:, 4:], x[:, :4], a], 1)], 1)
        return a, b, c, d, e, self.fuse(nested)


def test_propagation_through_data_movement_ops_and_nested_concats(tmp_path, registry):
    from bevcc.reference.seeding import seeded

    model, generator = seeded(Movers, seed=3)
    example = (torch.randn(1, 3, 8, 8, generator=generator),)
    calib = [{"img": torch.randn(4, 3, 8, 8, generator=generator).numpy()} for _ in range(4)]
    before = lint_model(
        onnx.load(
            compile_file(
                tmp_path / "a.onnx", (model.eval(), example), calib, registry, PERCENTILE
            ).output
        )
    )
    assert before.reformats > 0
    scales = next(iter(before.mismatches)).scales
    # the whole graph after the stem is one domain: its distinct scales are the Reformats
    assert len(before.mismatches) == 1 and before.reformats == len(scales) - 1
    result = compile_file(
        tmp_path / "b.onnx", (model, example), calib, registry, f"{PERCENTILE},quantizer_unify"
    )
    after = lint_model(onnx.load(result.output))
    assert (after.reformats, after.problems) == (0, [])
    ir = bevcc.compile(
        (model, example),
        pipeline=f"fx({PERCENTILE},quantizer_unify)",
        calib=calib,
        registry=registry,
    ).ir
    targets = {
        n.target
        for n in ir.graph.nodes
        if n.op == "call_module" and isinstance(ir.module.get_submodule(n.target), TensorQuantizer)
    }
    assert len(targets) == 2  # the image's quantizer, and one for everything after the stem
    assert_matches_fake_quant(result.output, ir.module, calib[0], model)
