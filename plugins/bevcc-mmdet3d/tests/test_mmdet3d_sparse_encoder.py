"""mmdet3d's SparseEncoder (BEVFusion config): exact trace, libspconv file, interpreter parity."""

import onnx
import pytest
import torch
from bevcc_mmdet3d import models
from spconv.pytorch import SubMConv3d

import bevcc
from bevcc.ir.fx import FxIR
from bevcc.reference import random_voxels
from bevcc.sparse.interpreter import LibspconvInterpreter
from bevcc.sparse.libspconv_check import check_libspconv
from bevcc.testing import plugin_registry

PIPELINE = "fx(bn_fold,sparse_conv_quant,quantizer_unify)"


@pytest.fixture(scope="module")
def registry():
    return plugin_registry("mmdet3d")


@pytest.fixture(scope="module")
def encoder():
    return models.sparse_encoder_module(), models.sparse_encoder()


@pytest.fixture(scope="module")
def fake_quant(encoder, registry):
    _, specialized = encoder
    return bevcc.compile(
        specialized,
        pipeline=PIPELINE,
        registry=registry,
        calib=models.sparse_encoder_calib(count=2),
    ).ir


def _export(fake_quant, registry, path, order):
    bevcc.compile(
        fake_quant,
        pipeline=f"export_libspconv{{model_order=zyx,order={order}}}",
        output=path,
        registry=registry,
    )
    return onnx.load(path)


@pytest.fixture(scope="module")
def compiled(fake_quant, registry, tmp_path_factory):
    """The xyz file (CUDA-BEVFusion's lidar.backbone.xyz.onnx order) of the zyx model."""
    path = tmp_path_factory.mktemp("sparse") / "lidar.backbone.xyz.onnx"
    return fake_quant, _export(fake_quant, registry, path, "xyz")


def _test_voxels():
    return random_voxels(9, 500, models.SMALL_SPARSE_SHAPE, channels=5)


def test_specialized_trace_is_the_eager_model(encoder, registry):
    """The block's BN/ReLU go through replace_feature; a Proxy attribute write would drop them."""
    source, (graph_module, example) = encoder
    assert isinstance(source.encoder_layers.encoder_layer1[0].conv1, SubMConv3d)
    ir = FxIR.trace(graph_module, example, registry.trace_rules())
    placeholders = [n.name for n in ir.graph.nodes if n.op == "placeholder"]
    assert placeholders == ["voxel_features", "coors"]
    assert sum(n.target == "replace_feature" for n in ir.graph.nodes) == 50
    features, coors = _test_voxels()
    with torch.no_grad():
        assert torch.equal(ir.module(features, coors), source(features, coors, 1))


def test_file_has_the_reference_layout_and_validates(compiled):
    kinds = [n.op_type for n in compiled[1].graph.node]
    counts = {k: kinds.count(k) for k in sorted(set(kinds))}
    assert counts == {
        "Add": 8,
        "Relu": 8,
        "Reshape": 1,
        "ScatterDense": 1,
        "SparseConvolution": 21,
        "Transpose": 1,
    }
    assert check_libspconv(compiled[1]) == []
    attrs = {
        n.name: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        for n in compiled[1].graph.node
    }
    # the grid and kernels in x, y, z; the model's (z, y, x) layout restored before its reshape
    (x, y, z) = models.SMALL_SPARSE_SHAPE[::-1]
    assert attrs["dense"]["format"] == b"xyz"
    assert attrs["conv_input_0"]["input_spatial_shape"] == [x, y, z]
    assert attrs["dense"]["output_shape"] == [1, 128, 8, 8, 2]
    assert attrs["dense_to_model_order"]["dims"] == [0, 1, 4, 3, 2]
    # mmdet3d's conv_out has kernel (3, 1, 1) along (z, y, x): (1, 1, 3) in the file
    assert attrs["conv_out_0"]["kernel_size"] == [1, 1, 3]


def _within_two_steps(model, got, want):
    last = next(n for n in model.graph.node if n.name == "conv_out_0")
    amax = next(a.f for a in last.attribute if a.name == "input_dynamic_range")
    # fp16 weight storage only: within two steps of the last conv's input quantizer
    assert (got - want).abs().max() <= 2 * amax / 127


def test_interpreter_runs_the_file_like_the_fake_quant_model(compiled):
    fake_quant, model = compiled
    features, coors = _test_voxels()  # (b, z, y, x), as mmdet3d's voxelizer writes them
    with torch.no_grad():
        want = fake_quant.module(features, coors)
    (got,) = LibspconvInterpreter(model, "int8")(features, coors[:, [0, 3, 2, 1]])
    assert got.shape == want.shape == (1, 256, 8, 8)
    _within_two_steps(model, got, want)


def test_zyx_file_keeps_the_model_axes(fake_quant, registry, tmp_path):
    model = _export(fake_quant, registry, tmp_path / "zyx.onnx", "zyx")
    assert check_libspconv(model) == []
    attrs = {
        n.name: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        for n in model.graph.node
    }
    assert attrs["dense"]["format"] == b"zyx"
    assert attrs["conv_input_0"]["input_spatial_shape"] == list(models.SMALL_SPARSE_SHAPE)
    assert attrs["conv_out_0"]["kernel_size"] == [3, 1, 1]
    features, coors = _test_voxels()
    with torch.no_grad():
        want = fake_quant.module(features, coors)
    (got,) = LibspconvInterpreter(model, "int8")(features, coors)
    _within_two_steps(model, got, want)


def test_attribute_write_on_a_traced_value_fails_loudly(registry):
    from spconv.pytorch import SparseConvTensor, SparseModule

    class Writes(SparseModule):
        def __init__(self):
            super().__init__()
            self.conv = SubMConv3d(5, 4, 3, padding=1, indice_key="a")

        def forward(self, x):
            out = self.conv(x)
            out.features = out.features * 2
            return out

    class Root(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Writes()

        def forward(self, features, coors):
            return self.block(SparseConvTensor(features, coors, [8, 8, 8], 1)).dense()

    with pytest.raises(bevcc.InputError, match="forward assigns 'features' on traced value"):
        FxIR.trace(Root(), None, registry.trace_rules())


def test_a_set_records_its_ranges_and_the_rebuilt_encoder_has_them_bit_for_bit(registry, tmp_path):
    """bevcc evaluate's rebuild of mmdet3d's encoder sets the amax the set compile recorded
    (reports/<file>/<step>.ranges.json) instead of calibrating again: every calibrated
    quantizer of the rebuilt module has its recorded range, bit for bit. The sparse_conv_quant
    record is edited first (each range doubled), so ranges measured again would not match."""
    import json

    from bevcc.config import CompileConfig, FileSpec
    from bevcc.deploy.evaluation import reference_modules

    spec = FileSpec(
        "lidar",
        "bevcc_mmdet3d.models:sparse_encoder",
        f"{PIPELINE},export_libspconv{{model_order=zyx}}",
        "libspconv",
        calib="bevcc_mmdet3d.models:sparse_encoder_calib",
    )
    out = tmp_path / "set"
    bevcc.compile_set(CompileConfig(files=[spec]), output=out, registry=registry)
    recorded = {}
    for step in ("sparse_conv_quant", "quantizer_unify"):  # unify's recalibration comes last
        path = out / "reports" / "lidar" / f"{step}.ranges.json"
        data = json.loads(path.read_text())
        if step == "sparse_conv_quant":
            for entry in data["ranges"].values():
                entry["amax"] = [2 * value for value in entry["amax"]]
            path.write_text(json.dumps(data))
        recorded.update(data["ranges"])
    module = reference_modules(CompileConfig(files=[spec]), out, quantized=True)["lidar"]
    # sparse_conv_quant calibrated 20 conv inputs and both inputs of 8 residual Adds;
    # quantizer_unify dropped each Add's conv-branch quantizer (a shared quantizer answers to
    # each of its names)
    names = {name for name, _ in module.named_modules(remove_duplicate=False)}
    kept = {name: entry for name, entry in recorded.items() if name in names}
    assert (len(recorded), len(kept)) == (20 + 2 * 8, 20 + 8)
    for name, entry in kept.items():
        want = torch.tensor(entry["amax"]).reshape(entry["shape"])
        assert torch.equal(module.get_submodule(name).amax, want), name
