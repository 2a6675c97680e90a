"""qdq_insert on both IRs, the Q/DQ export, and onnxruntime parity with the fake-quant model."""

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

import bevcc
from bevcc.errors import BevccError
from bevcc.quant.encoding_check import check_encoding
from bevcc.quant.quantizer import TensorQuantizer
from bevcc.reference.seeding import seeded


def batches_like(example, count=4, batch=3, seed=1):
    """`count` calibration batches shaped like the example inputs, keyed by input name."""
    g = torch.Generator().manual_seed(seed)
    names, tensors = example
    return [
        {
            n: torch.randn((batch,) + tuple(t.shape[1:]), generator=g).numpy()
            for n, t in zip(names, tensors, strict=True)
        }
        for _ in range(count)
    ]


def run_onnx(path, feed):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options).run(None, feed)


def qdq_count(model: onnx.ModelProto) -> Counter:
    return Counter(
        n.op_type for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
    )


def largest_activation_step(module) -> float:
    return max(
        float(q.amax) / 127
        for q in module.modules()
        if isinstance(q, TensorQuantizer) and q.axis is None and q.amax is not None
    )


def assert_matches_fake_quant(path, fx_module, feed: dict, float_module=None):
    """onnxruntime on the file == the PyTorch fake-quant model, within one quantization step."""
    with torch.no_grad():
        want = fx_module(*[torch.from_numpy(v) for v in feed.values()])
    want = want if isinstance(want, (tuple, list)) else [want]
    got = run_onnx(path, feed)
    step = largest_activation_step(fx_module)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=step)
    if float_module is not None:  # quantization really happened
        with torch.no_grad():
            plain = float_module(*[torch.from_numpy(v) for v in feed.values()])
        plain = plain if isinstance(plain, (tuple, list)) else [plain]
        assert any(
            not np.allclose(w.numpy(), p.numpy(), atol=1e-6)
            for w, p in zip(want, plain, strict=True)
        )


# ---- the reference CNN ------------------------------------------------------------------------
@pytest.fixture
def tiny_calib(tiny):
    _, (x,) = tiny
    return batches_like((["x"], [x]))


def test_fx_path_exports_exact_qdq_that_onnxruntime_runs_like_the_fake_quant_model(
    tmp_path, golden, registry, tiny, tiny_calib
):
    model, _ = tiny
    out = tmp_path / "q.onnx"
    result = bevcc.compile(
        tiny,
        calib=tiny_calib,
        output=out,
        registry=registry,
        pipeline="fx(bn_fold,qdq_insert),export{dynamic_batch=true},onnx(check)",
    )
    record = result.records[1]
    assert record.stats["quantized"] == {"Conv2d": 7, "ConvTranspose2d": 1}
    assert record.stats["quantizers"] == 16 and record.stats["batches"] == 4
    assert record.report[0] == (
        "quantized 8 layers (Conv2d 7, ConvTranspose2d 1), 16 "
        "quantizers, calibrated on 4 batches (max)"
    )
    emitted = onnx.load(out)
    # 8 weights + 8 layer inputs, but down.0 and lateral read one tensor with one scale: the
    # exporter writes that pair once.
    assert qdq_count(emitted) == {"QuantizeLinear": 15, "DequantizeLinear": 15}
    assert check_encoding(emitted) == []
    fx_ir = bevcc.compile(
        tiny, pipeline="fx(bn_fold,qdq_insert)", calib=tiny_calib, registry=registry
    ).ir
    assert_matches_fake_quant(out, fx_ir.module, {"x": tiny_calib[0]["x"]}, model)
    golden("qdq_tiny_cnn.fx", fx_ir)
    golden("qdq_tiny_cnn.onnx", result.ir)


def test_onnx_path_agrees_with_the_fx_path_on_placement_and_max_scales(
    tmp_path, registry, tiny, tiny_calib
):
    fx_file, float_file, onnx_file = (tmp_path / f for f in ("fx.onnx", "float.onnx", "o.onnx"))
    bevcc.compile(
        tiny,
        pipeline="fx(bn_fold,qdq_insert),export{dynamic_batch=true}",
        calib=tiny_calib,
        output=fx_file,
        registry=registry,
    )
    bevcc.compile(
        tiny,
        pipeline="fx(bn_fold),export{dynamic_batch=true}",
        output=float_file,
        registry=registry,
    )
    source = float_file.read_bytes()
    result = bevcc.compile(
        str(float_file),
        pipeline="onnx(qdq_insert,check)",
        calib=tiny_calib,
        output=onnx_file,
        registry=registry,
    )
    assert float_file.read_bytes() == source  # the input file is untouched
    assert result.records[0].stats["quantized"] == {"Conv": 7, "ConvTranspose": 1}
    from_fx, from_onnx = onnx.load(fx_file), onnx.load(onnx_file)
    assert qdq_count(from_onnx) == qdq_count(from_fx)
    assert check_encoding(from_onnx) == []
    a, b = _dq_inputs(from_fx), _dq_inputs(from_onnx)
    assert a.keys() == b.keys()  # the same layers, by torch's node names
    for name in a:
        for (scale_a, axis_a), (scale_b, axis_b) in zip(a[name], b[name], strict=True):
            assert axis_a == axis_b, name
            np.testing.assert_allclose(scale_a, scale_b, rtol=1e-6, err_msg=name)
    fx_module = bevcc.compile(
        tiny, pipeline="fx(bn_fold,qdq_insert)", calib=tiny_calib, registry=registry
    ).ir.module
    assert_matches_fake_quant(onnx_file, fx_module, {"x": tiny_calib[0]["x"]})


def _dq_inputs(model) -> dict:
    """layer name -> [(scale, axis) of the DQ feeding input 0, ... input 1]."""
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    found = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            pairs = []
            for name in node.input[:2]:
                dq = producer.get(name)
                if dq is not None and dq.op_type == "DequantizeLinear":
                    axis = next((a.i for a in dq.attribute if a.name == "axis"), None)
                    pairs.append((constants[dq.input[1]], axis))
            found[node.name] = pairs
    return found


# ---- every op type ----------------------------------------------------------------------------
class AllOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.t1 = nn.Conv1d(4, 6, 3, padding=1), nn.ConvTranspose1d(6, 4, 2, stride=2)
        self.c2 = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.t2 = nn.ConvTranspose2d(8, 4, 2, stride=2, groups=2)
        self.c3, self.t3 = nn.Conv3d(4, 4, 3, padding=1), nn.ConvTranspose3d(4, 2, 2, stride=2)
        self.lin = nn.Linear(16, 8)

    def forward(self, seq, img, vol, tokens):
        a = self.t1(torch.relu(self.c1(seq)))
        b = self.t2(torch.relu(self.c2(img)))
        c = self.t3(torch.relu(self.c3(vol)))
        q = self.lin(tokens)
        attention = torch.matmul(q, q.transpose(1, 2))
        return a, b, c, torch.bmm(attention, q)


@pytest.fixture
def all_ops():
    model, _ = seeded(AllOps, seed=2)
    names = ["seq", "img", "vol", "tokens"]
    example = (
        torch.randn(1, 4, 8),
        torch.randn(1, 4, 6, 6),
        torch.randn(1, 4, 3, 4, 4),
        torch.randn(1, 5, 16),
    )
    return model.eval(), names, example


@pytest.mark.parametrize("axis", [0, 1])
def test_every_op_type_is_quantized_and_onnxruntime_matches(tmp_path, registry, all_ops, axis):
    model, names, example = all_ops
    calib = batches_like((names, example))
    out = tmp_path / "q.onnx"
    result = bevcc.compile(
        (model, example),
        pipeline=f"fx(qdq_insert{{conv_transpose_axis={axis}}}),export{{dynamic_batch=true}}",
        calib=calib,
        output=out,
        registry=registry,
    )
    assert result.records[0].stats["quantized"] == {
        "Conv1d": 1,
        "Conv2d": 1,
        "Conv3d": 1,
        "ConvTranspose1d": 1,
        "ConvTranspose2d": 1,
        "ConvTranspose3d": 1,
        "Linear": 1,
        "matmul": 2,
    }
    emitted = onnx.load(out)
    # 7 weights, 7 layer inputs, q / q^T / attention for the matmuls (q's two readers share)
    assert qdq_count(emitted) == {"QuantizeLinear": 17, "DequantizeLinear": 17}
    assert check_encoding(emitted, conv_transpose_axis=axis) == []
    wrong = check_encoding(emitted, conv_transpose_axis=1 - axis)
    assert len(wrong) == 3 and all("ConvTranspose" in str(p) for p in wrong)
    fx_module = bevcc.compile(
        (model, example),
        pipeline=f"fx(qdq_insert{{conv_transpose_axis={axis}}})",
        calib=calib,
        registry=registry,
    ).ir.module
    assert_matches_fake_quant(out, fx_module, calib[0], model)


def test_onnx_path_covers_the_same_ops_on_the_float_file(tmp_path, registry, all_ops):
    model, names, example = all_ops
    calib = batches_like((names, example))
    float_file = tmp_path / "float.onnx"
    bevcc.compile(
        (model, example),
        pipeline="fx(dce),export{dynamic_batch=true}",
        output=float_file,
        registry=registry,
    )
    result = bevcc.compile(
        str(float_file),
        pipeline="onnx(qdq_insert,check)",
        calib=calib,
        output=tmp_path / "q.onnx",
        registry=registry,
    )
    # Linear on a 3-D input exports as MatMul + Add, so it counts as a MatMul here
    assert result.records[0].stats["quantized"] == {"Conv": 3, "ConvTranspose": 3, "MatMul": 3}
    emitted = onnx.load(tmp_path / "q.onnx")
    assert qdq_count(emitted) == {"QuantizeLinear": 17, "DequantizeLinear": 17}
    assert check_encoding(emitted) == []
    fx_module = bevcc.compile(
        (model, example), pipeline="fx(qdq_insert)", calib=calib, registry=registry
    ).ir.module
    assert_matches_fake_quant(tmp_path / "q.onnx", fx_module, calib[0])


# ---- configuration, calibrators, errors -------------------------------------------------------
def test_config_file_keeps_layers_float_and_reports_what_it_did(
    tmp_path, registry, tiny, tiny_calib
):
    config = tmp_path / "quant.toml"
    config.write_text(
        '[[overrides]]\nmatch = "head"\nenabled = false\n'
        '[[overrides]]\nmatch = "fuse.*"\ncalibrator = "histogram:percentile"\n'
        '[[overrides]]\nmatch = "nothing.here"\nenabled = false\n'
    )
    result = bevcc.compile(
        tiny,
        pipeline=f"fx(bn_fold,qdq_insert{{config={config}}}),export",
        calib=tiny_calib,
        registry=registry,
    )
    record = result.records[1]
    assert record.stats["kept_float"] == ["head"]
    assert record.stats["unused_overrides"] == ["nothing.here"]
    assert record.report[1:] == ["  kept float: head", "  override matched nothing: nothing.here"]
    module = bevcc.compile(
        tiny,
        pipeline=f"fx(bn_fold,qdq_insert{{config={config}}})",
        calib=tiny_calib,
        registry=registry,
    ).ir.module
    assert not hasattr(module.get_submodule("head"), "weight_quantizer")
    assert module.get_submodule("fuse.0.input_quantizer").calibrator_name == "histogram:percentile"
    assert qdq_count(result.ir.to_model()) == {"QuantizeLinear": 13, "DequantizeLinear": 13}


def test_histogram_calibrator_from_the_pipeline_clips_below_max(registry, tiny, tiny_calib):
    def amax(text):
        module = bevcc.compile(tiny, pipeline=text, calib=tiny_calib, registry=registry).ir.module
        return float(module.get_submodule("stem.0.input_quantizer").amax)

    assert amax("fx(qdq_insert{calibrator=histogram:percentile,percentile=99})") < amax(
        "fx(qdq_insert)"
    )


def test_without_calibration_data_is_one_usage_error(registry, tiny):
    with pytest.raises(BevccError, match="qdq_insert needs calibration data"):
        bevcc.compile(tiny, pipeline="fx(qdq_insert)", registry=registry)


def test_wrong_shape_calibration_batch_names_batch_input_and_shapes(registry, tiny):
    bad = [{"x": np.zeros((2, 3, 32, 32), np.float32)}, {"x": np.zeros((2, 5, 32, 32), np.float32)}]
    with pytest.raises(
        BevccError,
        match=r"calibration batch 1 input 'x' .* has shape "
        r"\(2, 5, 32, 32\), the model takes \('N', 3, 32, 32\)",
    ):
        bevcc.compile(tiny, pipeline="fx(qdq_insert)", calib=bad, registry=registry)


def test_uncalibrated_quantizer_is_refused_at_export(registry, tiny, tiny_calib):
    ir = bevcc.compile(tiny, pipeline="fx(qdq_insert)", calib=tiny_calib, registry=registry).ir
    ir.module.get_submodule("head.input_quantizer").amax = None
    with pytest.raises(
        BevccError,
        match=r"quantizer head.input_quantizer is enabled but "
        r"uncalibrated",
    ):
        bevcc.compile(ir, pipeline="export", registry=registry)


class OneLayer(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


def test_dead_weight_channel_gets_a_floored_positive_scale_and_is_reported(tmp_path, registry):
    model = OneLayer(nn.Conv2d(3, 4, 1)).eval()
    with torch.no_grad():
        model.layer.weight[2] = 0
    example = (torch.randn(1, 3, 4, 4),)
    out = tmp_path / "q.onnx"
    result = bevcc.compile(
        (model, example),
        pipeline="fx(qdq_insert),export",
        calib=batches_like((["x"], example)),
        output=out,
        registry=registry,
    )
    assert result.records[0].stats["floored"] == ["layer.weight_quantizer"]
    assert check_encoding(onnx.load(out)) == []


def test_nothing_to_quantize_is_unmodified_on_both_irs(tmp_path, registry):
    model, example = OneLayer(nn.ReLU()), (torch.randn(1, 3),)
    calib = batches_like((["x"], example))
    result = bevcc.compile(
        (model, example),
        pipeline="fx(qdq_insert),export,onnx(qdq_insert)",
        calib=calib,
        registry=registry,
    )
    assert [r.modified for r in result.records] == [False, True, False]


def test_onnx_calibration_in_one_tensor_per_run_gives_the_same_scales(
    tmp_path, registry, tiny, tiny_calib
):
    float_file = tmp_path / "float.onnx"
    bevcc.compile(
        tiny,
        pipeline="fx(bn_fold),export{dynamic_batch=true}",
        output=float_file,
        registry=registry,
    )

    def scales_with(budget):
        result = bevcc.compile(
            str(float_file),
            calib=tiny_calib,
            registry=registry,
            pipeline=f"onnx(qdq_insert{{calib_memory_mb={budget}}})",
        )
        return {k: [s for s, _ in v] for k, v in _dq_inputs(result.ir.to_model()).items()}

    grouped, single = scales_with(512), scales_with(0)
    for name in grouped:
        for a, b in zip(grouped[name], single[name], strict=True):
            np.testing.assert_array_equal(a, b)


def test_python_api_takes_a_quant_config_dict(registry, tiny, tiny_calib):
    result = bevcc.compile(
        tiny,
        pipeline="fx(qdq_insert)",
        calib=tiny_calib,
        registry=registry,
        quant_config={"overrides": [{"match": "up", "enabled": False}]},
    )
    assert result.records[0].stats["kept_float"] == ["up"]


def test_onnx_calibration_groups_respect_the_byte_budget(tmp_path, registry, tiny):
    from bevcc.quant.onnx_calib import _groups, _tensor_bytes

    float_file = tmp_path / "float.onnx"
    model = bevcc.compile(
        tiny,
        pipeline="fx(bn_fold),export{dynamic_batch=true}",
        output=float_file,
        registry=registry,
    ).ir.to_model()
    feed = {"x": np.zeros((3, 3, 32, 32), np.float32)}
    names = [n.output[0] for n in model.graph.node if n.op_type == "Relu"]
    sizes = _tensor_bytes(model, feed)
    assert sizes[names[0]] == 3 * 16 * 32 * 32 * 4  # from the batch's own shape
    budget = 2 * sizes[names[0]]
    groups = _groups(model, names, feed, budget)
    assert [n for g in groups for n in g] == names and len(groups) > 1
    assert all(sum(sizes[n] for n in g) <= budget for g in groups if len(g) > 1)
