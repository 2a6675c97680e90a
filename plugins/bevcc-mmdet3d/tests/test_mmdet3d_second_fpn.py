"""SECOND + SECONDFPN from mmdet3d config dicts: trace rules, bn_fold, Q/DQ file, numerics."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from bevcc_mmdet3d import models
from mmcv.cnn.bricks.wrappers import ConvTranspose2d as MmcvConvTranspose2d
from torch import nn

import bevcc
from bevcc.ir.fx import FxIR
from bevcc.lint.checks import lint_model
from bevcc.plugins import load_plugins
from bevcc.testing import plugin_registry

PIPELINE = "fx(bn_fold,qdq_insert,quantizer_unify),export"


@pytest.fixture(scope="module")
def registry():
    return plugin_registry("mmdet3d")


@pytest.fixture(scope="module")
def decoder():
    return models.second_fpn()


@pytest.fixture(scope="module")
def compiled(decoder, registry, tmp_path_factory):
    """(fake-quant FxIR, the Q/DQ ONNX it exports)."""
    path = tmp_path_factory.mktemp("second_fpn") / "second_fpn.onnx"
    fake_quant = bevcc.compile(
        decoder,
        pipeline="fx(bn_fold,qdq_insert,quantizer_unify)",
        calib=models.second_fpn_calib(),
        registry=registry,
    ).ir
    bevcc.compile(fake_quant, pipeline="export", output=path, registry=registry)
    return fake_quant, onnx.load(path)


def test_built_from_config_dicts(decoder):
    model, (x,) = decoder
    second, fpn = model.stages
    assert [len(b) for b in second.blocks] == [3 * 6, 3 * 6]  # (conv, BN, ReLU) x (1 + 5)
    assert type(fpn.deblocks[1][0]) is MmcvConvTranspose2d  # mmcv's 'deconv' wrapper
    assert model(x)[0].shape == (1, 512, 32, 32)


def test_checkpoint_round_trip(decoder, tmp_path):
    model, (x,) = decoder
    path = tmp_path / "decoder.pth"
    torch.save({"meta": {}, "state_dict": model.state_dict()}, path)  # mmengine's layout
    loaded, _ = models.second_fpn(seed=7, checkpoint=path)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])
    torch.save({"state_dict": {"stages.0.blocks.0.0.weight": torch.zeros(1)}}, path)
    with pytest.raises(bevcc.InputError, match="does not match Chain: size mismatch"):
        models.second_fpn(checkpoint=path)
    state = dict(model.state_dict())
    state.pop("stages.1.deblocks.1.0.weight")
    torch.save(state, path)  # a bare state_dict works too, and a missing key is an error
    with pytest.raises(bevcc.InputError, match=r"missing stages\.1\.deblocks\.1\.0\.weight"):
        models.second_fpn(checkpoint=path)


def test_mmcv_deconv_traces_as_a_torch_layer_only_with_the_plugin(decoder, registry):
    model, example = decoder
    with_rules = FxIR.trace(model, example, registry.trace_rules()).module
    deconv = with_rules.get_submodule("stages.1.deblocks.1.0")
    assert type(deconv) is nn.ConvTranspose2d
    assert type(model.stages[1].deblocks[1][0]) is MmcvConvTranspose2d  # input untouched
    bare = FxIR.trace(model, example, load_plugins(autoload=False).registry.trace_rules())
    targets = [n.target for n in bare.graph.nodes]
    assert torch.conv_transpose2d in targets and "stages.1.deblocks.1.0" not in targets


def test_bn_fold_folds_every_batchnorm_and_keeps_the_numbers(decoder, registry):
    model, (x,) = decoder
    expected = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert expected == 14
    ir = FxIR.trace(model, (x,), registry.trace_rules())
    modules = dict(ir.module.named_modules())

    def batchnorms(graph_ir):
        mods = dict(graph_ir.module.named_modules())
        return sum(
            n.op == "call_module" and isinstance(mods[n.target], nn.BatchNorm2d)
            for n in graph_ir.graph.nodes
        )

    assert batchnorms(ir) == expected and len(modules) > expected
    folded = bevcc.compile(ir, pipeline="fx(bn_fold)", registry=registry)
    assert folded.records[0].stats["folded"] == {
        "Conv2d+BatchNorm2d": 13,
        "ConvTranspose2d+BatchNorm2d": 1,
    }
    assert batchnorms(folded.ir) == 0
    with torch.no_grad():
        torch.testing.assert_close(folded.ir.module(x)[0], model(x)[0], rtol=1e-4, atol=1e-4)


def test_qdq_count_is_derived_from_the_module_structure(decoder, compiled):
    model, _ = decoder
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    # Activation quantizers: one per distinct conv input tensor. SECOND's blocks each feed the
    # next conv inside the block (5 per block) and the block output feeds the next block and
    # one FPN branch; the model input feeds the first conv.
    second, fpn = model.stages
    inside_blocks = sum(len([m for m in b if isinstance(m, nn.Conv2d)]) - 1 for b in second.blocks)
    block_outputs = len(second.blocks)
    expected = len(convs) + 1 + inside_blocks + block_outputs
    assert (len(convs), expected) == (14, 27)
    kinds = [n.op_type for n in compiled[1].graph.node]
    assert kinds.count("QuantizeLinear") == kinds.count("DequantizeLinear") == expected
    assert len(fpn.deblocks) == 2


def test_file_is_lint_clean(compiled):
    report = lint_model(compiled[1])
    assert report.qdq_pairs == 27 and report.reformats == 0 and not report.problems
    assert report.int8_mac_share == 1.0


def test_onnxruntime_matches_fake_quant_pytorch_within_one_step(compiled):
    fake_quant, model = compiled
    x = models.bev_inputs(42)
    with torch.no_grad():
        want = fake_quant.module(x)[0].numpy()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert got.shape == want.shape == (1, 512, 32, 32)
    # One step of the coarsest activation quantizer: a rounding tie resolved differently.
    steps = [
        float(onnx.numpy_helper.to_array(i))
        for i in model.graph.initializer
        if onnx.numpy_helper.to_array(i).ndim == 0 and i.data_type == onnx.TensorProto.FLOAT
    ]
    assert steps and np.abs(got - want).max() <= max(steps)
