"""Shape arithmetic in user models (issue 19.3): the frontend specializes every PyTorch input to
its example inputs, so mmdet3d- and OpenPCDet-style lidar encoders (`N, C, D, H, W = x.shape;
x.view(N, C * D, H, W)`, non-tensor and dict inputs) compile through the real CLI to libspconv
files that bevcc's interpreter runs like the PyTorch model at any voxel count, and a camera neck
with `x.shape[-2:]` interpolation sizes becomes a Q/DQ ONNX file onnxruntime agrees with."""

import copy
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import bevcc
from bevcc.errors import InputError
from bevcc.frontend import load_ir
from bevcc.ir.fx import CAPTURE_ONNX_HINT, FxIR
from bevcc.plugins import load_plugins
from bevcc.sparse.interpreter import LibspconvInterpreter
from bevcc.sparse.libspconv_check import check_libspconv
from bevcc.testing import NO_PLUGINS
from tests import shape_models
from tests.conftest import run_bevcc

LIBSPCONV = "fx(bn_fold,sparse_conv_quant,quantizer_unify),export_libspconv"
FAKE_QUANT = "fx(bn_fold,sparse_conv_quant,quantizer_unify)"
# builder, export options, interpreter coordinate columns, input names, BEV map, file ops
ENCODERS = {
    "mmdet3d": (
        "mmdet_style",
        "",
        [0, 1, 2, 3],
        ("voxel_features", "coors"),
        [1, 64, 8, 8],
        {"SparseConvolution": 7, "ScatterDense": 1, "Transpose": 1, "Reshape": 1},
    ),
    # a zyx model: the xyz file is fed (b, x, y, z), and a Transpose restores the model's axes
    "openpcdet": (
        "pcdet_style",
        "{model_order=zyx}",
        [0, 3, 2, 1],
        ("voxel_features", "voxel_coords"),
        [1, 64, 4, 4],
        {"SparseConvolution": 9, "ScatterDense": 1, "Transpose": 1, "Reshape": 1},
    ),
}


@pytest.fixture(scope="module")
def plain_registry():
    return load_plugins(autoload=False).registry


def voxel_tensors(builder: str, seed: int, count: int = 400):
    """(example inputs as the model takes them, features, coordinates)."""
    _, example = getattr(shape_models, builder)(seed, count)
    if isinstance(example[0], dict):
        return example, example[0]["voxel_features"], example[0]["voxel_coords"]
    return example, example[0], example[1]


@pytest.fixture(scope="module", params=sorted(ENCODERS))
def encoder(request, tmp_path_factory, plain_registry):
    """The encoder compiled by `bevcc compile build.py:build` in a fresh folder, as a user would,
    and its fake-quant model from the same calibration data."""
    builder, options, _, names, _, _ = ENCODERS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    shutil.copy(Path(shape_models.__file__), folder / "shape_models.py")
    (folder / "build.py").write_text(
        f"from shape_models import {builder}\n\n\ndef build():\n    return {builder}()\n"
    )
    (folder / "calib").mkdir()
    for seed in range(1, 4):
        _, features, coors = voxel_tensors(builder, seed)
        np.savez(
            folder / "calib" / f"{seed}.npz",
            **dict(zip(names, (features.numpy(), coors.numpy()), strict=True)),
        )
    proc = run_bevcc(
        "compile",
        "build.py:build",
        "--pipeline",
        LIBSPCONV + options,
        "--calib",
        "calib",
        "-o",
        "out.onnx",
        cwd=folder,
        env_extra=NO_PLUGINS,
    )
    assert proc.returncode == 0, proc.stderr
    model, example = getattr(shape_models, builder)()
    fake_quant = bevcc.compile(
        (model, example), pipeline=FAKE_QUANT, calib=str(folder / "calib"), registry=plain_registry
    ).ir
    return request.param, model, fake_quant, onnx.load(folder / "out.onnx")


def sqnr_db(reference: torch.Tensor, x: torch.Tensor) -> float:
    return float(10 * torch.log10(reference.pow(2).sum() / (reference - x).pow(2).sum()))


def test_encoder_file_has_the_reference_layout_and_validates(encoder):
    style, _, _, file = encoder
    *_, bev, ops = ENCODERS[style]
    assert Counter(n.op_type for n in file.graph.node) == ops
    assert check_libspconv(file) == []
    reshape = next(n for n in file.graph.node if n.op_type == "Reshape")
    assert onnx.helper.get_attribute_value(reshape.attribute[0]) == bev


@pytest.mark.parametrize("count", [150, 400, 900])
def test_file_computes_the_model_at_any_voxel_count(encoder, count):
    """int8: the interpreter equals the fake-quant model bit for bit (fp16-rounded weights);
    float: fp16 weight storage only (measured 71.6-73.4 dB, max abs 1.3e-4 on outputs ~0.4)."""
    style, model, fake_quant, file = encoder
    builder, _, columns, *_ = ENCODERS[style]
    example, features, coors = voxel_tensors(builder, 9, count)
    with torch.no_grad():
        want_int8 = fake_quant.module(features, coors)
        want_float = model(*copy.deepcopy(example))
    (got_int8,) = LibspconvInterpreter(file, "int8")(features, coors[:, columns])
    (got_float,) = LibspconvInterpreter(file, "float")(features, coors[:, columns])
    assert torch.equal(got_int8, want_int8)
    assert sqnr_db(want_float, got_float) > 65
    assert (got_float - want_float).abs().max() < 5e-4


def test_encoder_graph_is_static_but_its_voxel_count(encoder, plain_registry):
    style, model, *_ = encoder
    builder, _, _, names, bev, _ = ENCODERS[style]
    example, *_ = voxel_tensors(builder, 0)
    ir = load_ir((model, example), plain_registry)
    assert [n.name for n in ir.graph.nodes if n.op == "placeholder"] == list(names)
    assert ir.fixed_input_shapes == {
        names[0]: (None, 5 if style == "mmdet3d" else 4),
        names[1]: (None, 4),
    }
    assert not [
        n
        for n in ir.graph.nodes
        if n.target == "int" or (n.target is getattr and n.args[1] == "shape")
    ]
    view = next(n for n in ir.graph.nodes if n.target == "view")
    assert list(view.args[1:]) == bev


class SingleSampleEncoder(nn.Module):
    """Coordinates without the batch column, as a one-sample voxelizer writes them: the column
    is built from the voxel count, which must stay a live value of the graph."""

    def __init__(self):
        super().__init__()
        self.inner = shape_models.MmdetStyleSparseEncoder()

    def forward(self, voxel_features, coors):
        batch = coors.new_zeros(coors.shape[0], 1)
        return self.inner(voxel_features, torch.cat([batch, coors], dim=1), 1)


def test_values_that_follow_the_voxel_count_stay_live(plain_registry):
    model = shape_models.seeded_eval(SingleSampleEncoder)
    _, (features, coors, _) = shape_models.mmdet_style(0)
    ir = load_ir((model, (features, coors[:, 1:])), plain_registry)
    shape_reads = [n for n in ir.graph.nodes if n.target is getattr and n.args[1] == "shape"]
    assert [(n.args[0].name, n.args[1]) for n in shape_reads] == [("coors", "shape")]
    assert ir.fixed_input_shapes == {"voxel_features": (None, 5), "coors": (None, 3)}
    for count in (120, 900):
        _, (features, coors, _) = shape_models.mmdet_style(5, count)
        with torch.no_grad():
            assert torch.equal(ir.module(features, coors[:, 1:]), model(features, coors[:, 1:]))


def test_camera_neck_interpolation_sizes_fold_and_onnxruntime_agrees(plain_registry, tmp_path):
    neck = shape_models.seeded_eval(shape_models.CameraNeck)
    names = ["inputs_0", "inputs_1", "inputs_2"]
    calib = [
        dict(zip(names, (t.numpy() for t in shape_models.camera_features(s)), strict=True))
        for s in range(1, 5)
    ]
    fake_quant = bevcc.compile(
        (neck, (shape_models.camera_features(0),)),
        calib=calib,
        pipeline="fx(bn_fold,qdq_insert,quantizer_unify)",
        registry=plain_registry,
    ).ir
    # batch 2 runs at batch 1 too and nothing reads it; the sizes are the example's
    assert fake_quant.fixed_input_shapes == {
        "inputs_0": (None, 16, 24, 40),
        "inputs_1": (None, 32, 12, 20),
        "inputs_2": (None, 64, 6, 10),
    }
    sizes = [n.kwargs["size"] for n in fake_quant.graph.nodes if "interpolate" in str(n.target)]
    assert sizes == [(12, 20), (24, 40), (24, 40), (24, 40)]
    path = tmp_path / "neck.onnx"
    bevcc.compile(fake_quant, pipeline="export,onnx(check)", output=path, registry=plain_registry)
    file = onnx.load(path)
    # torch's exporter sizes a Resize as Concat(Shape(x)[:2], the H, W it was given): constants
    producer = {out: n for n in file.graph.node for out in n.output}
    resized = [
        onnx.numpy_helper.to_array(producer[producer[n.input[3]].input[1]].attribute[0].t)
        for n in file.graph.node
        if n.op_type == "Resize"
    ]
    assert [r.tolist() for r in resized] == [[12, 20], [24, 40], [24, 40], [24, 40]]
    assert Counter(n.op_type for n in file.graph.node)["QuantizeLinear"] > 0
    test = shape_models.camera_features(9)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(
        None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), test, strict=True)}
    )
    with torch.no_grad():
        want = fake_quant.module(*test)
    for g, w in zip(
        got, want, strict=True
    ):  # measured 60.5 and 56.8 dB (max abs 0.011 on outputs up to 2.9)
        assert sqnr_db(w, torch.from_numpy(g)) > 50


class Flatten(nn.Module):
    def forward(self, x):
        n, c, h, w = x.shape
        return torch.relu(x).view(n, c * h * w)


class FixedBatch(nn.Module):
    def forward(self, x):
        return x.reshape(2, -1, x.shape[2] * x.shape[3])  # its own 2: a batch of 1 fails


def test_fixed_input_shapes_say_which_dims_the_graph_requires(plain_registry, tmp_path):
    def fixed(model, x):
        (dims,) = load_ir((model, (x,)), plain_registry).fixed_input_shapes.values()
        return dims

    x = torch.randn(2, 3, 4, 5)
    assert fixed(Flatten(), x[:1]) == (1, 3, 4, 5)  # view(1, 60): batch 1 folded
    assert fixed(Flatten(), x) == (None, 3, 4, 5)  # view(n, 60): n stays live
    assert fixed(nn.Conv2d(3, 4, 3), x[:1]) == (None, None, None, None)  # reads no shape
    assert fixed(FixedBatch(), x) == (2, 3, 4, 5)
    # example inputs from the first calibration batch are specialized the same way
    ir = bevcc.compile(
        Flatten(), pipeline="fx(dce)", calib=[{"x": x.numpy()}], registry=plain_registry
    ).ir
    assert ir.fixed_input_shapes == {"x": (None, 3, 4, 5)}
    ir.save(tmp_path / "m.pt")
    assert FxIR.load(tmp_path / "m.pt").fixed_input_shapes == {"x": (None, 3, 4, 5)}


def test_a_missing_non_tensor_input_is_named(plain_registry):
    model, (features, coors, _) = shape_models.mmdet_style()
    with pytest.raises(
        InputError,
        match=r"^MmdetStyleSparseEncoder.forward needs batch_size "
        r"beyond the 2 example input\(s\) given",
    ):
        load_ir((model, (features, coors)), plain_registry)


GATED = """import torch
from torch import nn


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = Gate()

    def forward(self, x):
        return self.gate(x.view(x.shape[0], -1))


def build():
    return Net(), (torch.ones(2, 3),)
"""


def test_data_dependent_control_flow_is_one_line_naming_module_and_line(tmp_path):
    (tmp_path / "build.py").write_text(GATED)
    proc = run_bevcc(
        "compile", "build.py:build", "-o", "out.onnx", cwd=tmp_path, env_extra=NO_PLUGINS
    )
    assert proc.returncode == 1 and not (tmp_path / "out.onnx").exists()
    assert proc.stderr.strip().splitlines() == [
        (
            "bevcc: error: cannot trace Net: module 'gate' (Gate) failed: symbolically traced "
            "variables cannot be used as inputs to control flow at "
            f"{(tmp_path / 'build.py').resolve()}:7: `if x.sum() > 0:`; make Gate a leaf module "
            "(bevcc.register_leaf_module(Gate) or the bevcc_register_leaf_modules hook) or make its "
            f"forward traceable; {CAPTURE_ONNX_HINT}"
        )
    ]
