"""sparse_conv_quant and export_libspconv on BEVFusion's lidar backbone: the exact op counts of
CUDA-BEVFusion's file, the parser's checks, and a CPU interpreter proving the file encodes the
same network (float and INT8)."""

from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from bevcc_bevfusion.sparse_encoder import small_sparse_encoder
from onnx import helper, numpy_helper

import bevcc
from bevcc.errors import BevccError
from bevcc.lint.checks import lint_model
from bevcc.reference.tiny_sparse import random_voxels
from bevcc.sparse.interpreter import LibspconvInterpreter
from bevcc.sparse.libspconv_check import check_libspconv
from tests.conftest import run_bevcc

GRID = (64, 64, 41)
PIPELINE = "fx(bn_fold,sparse_conv_quant,quantizer_unify),export_libspconv"
REFERENCE_OPS = {
    "SparseConvolution": 21,
    "Add": 8,
    "Relu": 8,
    "ScatterDense": 1,
    "Transpose": 1,
    "Reshape": 1,
}


def voxels(seed):
    return random_voxels(seed, 600, GRID, channels=5)


@pytest.fixture(scope="module")
def encoder():
    model, example = small_sparse_encoder()
    calib = [
        dict(zip(["voxel_features", "coors"], [t.numpy() for t in voxels(s)], strict=True))
        for s in range(1, 5)
    ]
    return model, example, calib


@pytest.fixture(scope="module")
def registry():
    from bevcc.plugins import load_plugins

    return load_plugins(autoload=False).registry


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory, encoder, registry):
    model, example, calib = encoder
    path = tmp_path_factory.mktemp("lidar") / "lidar.backbone.xyz.onnx"
    result = bevcc.compile(
        (model, example), pipeline=PIPELINE, calib=calib, output=path, registry=registry
    )
    return result, onnx.load(path)


def attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def test_encoder_file_has_exactly_the_reference_ops_and_passes_the_parser_checks(int8_file, golden):
    result, model = int8_file
    assert Counter(n.op_type for n in model.graph.node) == REFERENCE_OPS
    assert check_libspconv(model) == []
    convs = {n.name: attrs(n) for n in model.graph.node if n.op_type == "SparseConvolution"}
    first, last = convs["conv_input_0"], convs["conv_out_0"]
    # the first conv stays fp16 but writes INT8 for its INT8 readers; the last one feeds
    # ScatterDense and writes fp16
    assert (first["precision"], first["output_precision"]) == (b"fp16", b"int8")
    assert (last["precision"], last["output_precision"]) == (b"int8", b"fp16")
    assert sum(a["activation"] == b"ReLU" for a in convs.values()) == 13  # 21 - 8 conv2s
    for a in convs.values():
        if a["precision"] == b"int8":
            assert len(a["weight_dynamic_ranges"]) == a["out_channels"]
    for t in model.graph.initializer:
        assert t.data_type == onnx.TensorProto.FLOAT16 and len(t.raw_data) == 2 * int(
            np.prod(t.dims)
        )
    assert result.records[-1].report == [
        (
            "wrote Add 8, Relu 8, Reshape 1, ScatterDense 1, SparseConvolution 21, Transpose 1; "
            "20 convs in INT8"
        )
    ]
    golden("libspconv_sparse_encoder", result.ir)


def test_block_input_has_one_range_for_conv1_and_the_residual_add(int8_file):
    _, model = int8_file
    ranges = {}
    for node in model.graph.node:
        a = attrs(node)
        if node.op_type == "SparseConvolution" and a["precision"] == b"int8":
            ranges.setdefault(node.input[0], set()).add(a["input_dynamic_range"])
        if node.op_type == "Add":
            ranges.setdefault(node.input[0], set()).add(a["input0_dynamic_range"])
            ranges.setdefault(node.input[1], set()).add(a["input1_dynamic_range"])
    identity_inputs = [n.input[1] for n in model.graph.node if n.op_type == "Add"]
    assert all(len(ranges[t]) == 1 for t in identity_inputs)  # NVIDIA's export has two


def test_float_file_matches_the_model_within_fp16_tolerance(tmp_path, encoder, registry):
    model, example, _ = encoder
    path = tmp_path / "float.onnx"
    bevcc.compile(
        (model, example), pipeline="fx(bn_fold),export_libspconv", output=path, registry=registry
    )
    test = voxels(9)
    with torch.no_grad():
        want = model(*test)
    (got,) = LibspconvInterpreter(onnx.load(path), "float")(*test)
    assert got.shape == want.shape == (1, 256, 8, 8)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-3)


def test_int8_file_is_the_fake_quant_model(tmp_path, encoder, registry):
    """With fp16-representable weights the file and the fake-quant model agree bit for bit;
    with raw fp32 weights only fp16 weight storage separates them."""
    model, example, calib = encoder
    folded = bevcc.compile((model, example), pipeline="fx(bn_fold)", registry=registry).ir
    with torch.no_grad():
        for p in folded.module.parameters():
            p.copy_(p.half().float())
    quantized = bevcc.compile(
        folded, pipeline="fx(sparse_conv_quant,quantizer_unify)", calib=calib, registry=registry
    ).ir
    path = tmp_path / "q.onnx"
    bevcc.compile(quantized, pipeline="export_libspconv", output=path, registry=registry)
    test = voxels(9)
    with torch.no_grad():
        want = quantized.module(*test)
    (got,) = LibspconvInterpreter(onnx.load(path), "int8")(*test)
    assert torch.equal(got, want)


def test_int8_file_with_raw_weights_stays_within_two_output_steps(int8_file, encoder, registry):
    _, model = int8_file
    source, example, calib = encoder
    fake_quant = bevcc.compile(
        (source, example),
        pipeline="fx(bn_fold,sparse_conv_quant,quantizer_unify)",
        calib=calib,
        registry=registry,
    ).ir.module
    test = voxels(9)
    with torch.no_grad():
        want = fake_quant(*test)
    (got,) = LibspconvInterpreter(model, "int8")(*test)
    last = attrs(next(n for n in model.graph.node if n.name == "conv_out_0"))
    step = last["input_dynamic_range"] / 127
    diff = (got - want).abs()
    print(f"int8 file vs fake-quant: max {diff.max():.4g}, mean {diff.mean():.3g}, step {step:.4g}")
    assert diff.max() <= 2 * step and diff.mean() < 0.1 * step


def test_a_dropped_activation_is_caught_by_the_interpreter(int8_file, encoder):
    _, model = int8_file
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    conv = next(n for n in broken.graph.node if n.name == "conv_out_0")
    next(a for a in conv.attribute if a.name == "activation").s = b"None"
    test = voxels(9)
    (good,) = LibspconvInterpreter(model, "float")(*test)
    (bad,) = LibspconvInterpreter(broken, "float")(*test)
    assert check_libspconv(broken) == []  # the parser accepts it; only running shows it
    assert (good - bad).abs().max() > 1e-2


def test_tiny_sparse_with_an_inverse_conv_round_trips(tmp_path, registry):
    from bevcc.reference.tiny_sparse import tiny_sparse

    model, example = tiny_sparse()
    path = tmp_path / "tiny.onnx"
    bevcc.compile(
        (model, example), pipeline="fx(bn_fold),export_libspconv", output=path, registry=registry
    )
    file = onnx.load(path)
    inverse = [attrs(n) for n in file.graph.node if attrs(n).get("inverse") == 1]
    assert len(inverse) == 1 and inverse[0]["rulebook"] == b"down1"
    with torch.no_grad():
        want = model(*example)
    (got,) = LibspconvInterpreter(file, "float")(*example)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-3)


def test_zyx_order_reverses_kernel_attributes_and_weight_axes(tmp_path, encoder, registry):
    model, example, _ = encoder
    files = {}
    for order in ("xyz", "zyx"):
        path = tmp_path / f"{order}.onnx"
        bevcc.compile(
            (model, example),
            pipeline=f"fx(bn_fold),export_libspconv{{order={order}}}",
            output=path,
            registry=registry,
        )
        files[order] = onnx.load(path)
    xyz = {n.name: attrs(n) for n in files["xyz"].graph.node}
    zyx = {n.name: attrs(n) for n in files["zyx"].graph.node}
    assert xyz["conv_out_0"]["kernel_size"] == [1, 1, 3] and zyx["conv_out_0"]["kernel_size"] == [
        3,
        1,
        1,
    ]
    assert zyx["dense"]["format"] == b"zyx" and zyx["dense"]["input_spatial_shape"] == [2, 8, 8]
    w = {
        o: {t.name: numpy_helper.to_array(t) for t in f.graph.initializer} for o, f in files.items()
    }
    np.testing.assert_array_equal(
        w["zyx"]["conv_out.0.weight"], w["xyz"]["conv_out.0.weight"].transpose(0, 3, 2, 1, 4)
    )
    assert check_libspconv(files["zyx"]) == []
    # the zyx file is the same network: fed (b, z, y, x) coordinates, it computes the model
    features, coors = example
    with torch.no_grad():
        want = model(*example)
    (got,) = LibspconvInterpreter(files["zyx"], "float")(features, coors[:, [0, 3, 2, 1]])
    torch.testing.assert_close(got, want, rtol=0, atol=2e-3)


# ---- a file the engine would reject is never written ------------------------------------------
def test_uncalibrated_quantizer_fails_with_one_line_and_no_file(tmp_path, encoder, registry):
    model, example, calib = encoder
    ir = bevcc.compile(
        (model, example), pipeline="fx(bn_fold,sparse_conv_quant)", calib=calib, registry=registry
    ).ir
    ir.module.get_submodule("conv_out.0.input_quantizer").amax = None
    out = tmp_path / "x.onnx"
    with pytest.raises(
        BevccError,
        match=r"quantizer conv_out.0.input_quantizer is enabled but "
        r"uncalibrated",
    ):
        bevcc.compile(ir, pipeline="export_libspconv", output=out, registry=registry)
    assert not out.exists()


def test_nan_weights_fail_and_dead_channels_get_positive_ranges(tmp_path, encoder, registry):
    model, example, calib = encoder
    ir = bevcc.compile((model, example), pipeline="fx(bn_fold)", registry=registry).ir
    with torch.no_grad():
        ir.module.get_submodule("encoder_layers.1.0.conv1").weight[3] = 0  # a dead filter
    quantized = bevcc.compile(ir, pipeline="fx(sparse_conv_quant)", calib=calib, registry=registry)
    assert "encoder_layers.1.0.conv1.weight_quantizer" in quantized.records[0].stats["floored"]
    model_file = bevcc.compile(
        quantized.ir, pipeline="export_libspconv", registry=registry
    ).ir.model
    assert check_libspconv(model_file) == []
    with torch.no_grad():
        quantized.ir.module.get_submodule("encoder_layers.2.0.conv2").weight[0, 0, 0, 0, 0] = float(
            "nan"
        )
    with pytest.raises(BevccError, match=r"weight of encoder_layers.2.0.conv2 has NaN"):
        bevcc.compile(quantized.ir, pipeline="export_libspconv", registry=registry)


@pytest.mark.parametrize(
    "break_it, message",
    [
        (
            lambda m: m.graph.node.append(helper.make_node("Sigmoid", ["voxels"], ["s"])),
            "unsupported operator Sigmoid",
        ),
        (lambda m: _set(m, "conv_out_0", "precision", b"int4"), "precision 'int4'"),
        (
            lambda m: _set(m, "conv_out_0", "weight_dynamic_ranges", [1.0] * 3),
            "Invalid weight scales 3 != 128",
        ),
        (
            lambda m: _set(m, "conv_out_0", "input_dynamic_range", 0.0),
            "must be finite and positive",
        ),
        (lambda m: _set(m, "add", "input1_dynamic_range", 123.0), "has two ranges"),
        (lambda m: m.graph.node[0].input.pop(), "no bias input"),
        (lambda m: _to_float32(m, "conv_out.0.bias"), "Can not support non float data type"),
    ],
)
def test_validator_names_what_the_parser_would_reject(int8_file, break_it, message):
    _, model = int8_file
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    break_it(broken)
    problems = check_libspconv(broken)
    assert any(message in p for p in problems), problems
    assert lint_model(broken).errors >= 1


def _set(model, node_name, key, value):
    node = next(n for n in model.graph.node if n.name == node_name)
    for i, a in enumerate(node.attribute):
        if a.name == key:
            node.attribute.pop(i)
            break
    node.attribute.append(helper.make_attribute(key, value))


def _to_float32(model, name):
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), name))


def test_cli_compiles_the_registered_lidar_backbone_and_lint_reads_the_file(tmp_path):
    out = tmp_path / "lidar.onnx"
    proc = run_bevcc(
        "compile",
        "sparse_encoder",
        "--calib",
        "bevcc_bevfusion.sparse_encoder:calibration_batches",
        "--pipeline",
        PIPELINE,
        "-o",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert Counter(n.op_type for n in onnx.load(out).graph.node) == REFERENCE_OPS
    proc = run_bevcc("lint", out)
    assert proc.returncode == 0 and "(libspconv file)" in proc.stdout
    # the module path beside the node name, and the INT8 layers counted from the attributes
    assert "fp16 layers (1): conv_input.0 (conv_input_0)" in proc.stdout
    assert "INT8 layers          20 of 21 sparse convs" in proc.stdout


def test_fp16_layers_are_chosen_by_name_and_their_producers_write_fp16(tmp_path, encoder, registry):
    model, example, calib = encoder
    result = bevcc.compile(
        (model, example),
        calib=calib,
        registry=registry,
        pipeline=(
            'fx(bn_fold,sparse_conv_quant{fp16="conv_input.0, encoder_layers.3.1.* add_7"},'
            "quantizer_unify),export_libspconv"
        ),
    )
    assert result.records[1].stats["fp16"] == [
        "add_7",
        "conv_input.0",
        "encoder_layers.3.1.conv1",
        "encoder_layers.3.1.conv2",
    ]
    convs = {n.name: attrs(n) for n in result.ir.model.graph.node}
    assert convs["encoder_layers_3_1_conv1"]["precision"] == b"fp16"
    # the Relu before that block feeds an fp16 conv: the Add writing it goes fp16
    assert convs["add_6"]["output_precision"] == b"fp16"
    assert convs["add_7"]["precision"] == b"fp16"
    assert check_libspconv(result.ir.model) == []
