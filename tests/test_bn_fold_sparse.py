"""fx bn_fold on spconv models: SparseSequential, residual sparse basic blocks, strided and inverse
convs; numerics against the unfolded model and against dense torch convolutions."""

import pytest
import spconv.pytorch as spconv
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from spconv.pytorch.conv import SparseConvolution
from torch import nn

import bevcc
from bevcc.ir.fx import FxIR
from bevcc.reference.seeding import randomize_batchnorm, seeded
from bevcc.reference.tiny_sparse import TinySparseEncoder, random_voxels
from bevcc.sparse.conv_bias import SparseConvBias

SHAPE = [16, 16, 8]


def sparse_input(features, coors, shape=SHAPE):
    return spconv.SparseConvTensor(features, coors, shape, 1)


def run(model, inputs):
    with torch.no_grad():
        return model(*inputs)


def fold(model, inputs, registry, pipeline="fx(bn_fold)"):
    return bevcc.compile((model, inputs), pipeline=pipeline, registry=registry)


@pytest.fixture
def encoder():
    model, _ = seeded(TinySparseEncoder, seed=3)
    return model.eval(), random_voxels(seed=4)


# ---- spconv on CPU is right every call (bevcc.sparse.cpu_ops) ------------------------------------
def test_subm_and_strided_sparse_convs_match_dense_convolution_on_every_call(registry):
    features, coors = random_voxels(seed=1)
    dense_in = sparse_input(features, coors).dense()
    active = dense_in.abs().sum(1, keepdim=True) > 0
    subm = spconv.SubMConv3d(4, 8, 3, padding=1, bias=False, indice_key="a").eval()
    strided = spconv.SparseConv3d(4, 8, 3, stride=2, padding=1, bias=False).eval()

    def dense_weight(conv):  # spconv [Cout, k0, k1, k2, Cin] -> torch [Cout, Cin, k0, k1, k2]
        return conv.weight.detach().permute(0, 4, 1, 2, 3)

    want_subm = F.conv3d(dense_in, dense_weight(subm), padding=1) * active
    want_strided = F.conv3d(dense_in, dense_weight(strided), stride=2, padding=1)
    # spconv's own CPU scatter-add gets one row wrong in roughly 1 call out of 10; 40 calls
    # each would catch it with probability above 98%.
    for _ in range(40):
        x = sparse_input(features, coors)
        torch.testing.assert_close(run(subm, (x,)).dense(), want_subm, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(run(strided, (x,)).dense(), want_strided, rtol=1e-5, atol=1e-5)


# ---- the reference encoder -----------------------------------------------------------------------
def test_encoder_folds_every_batchnorm_and_stays_numerically_equal(golden, registry, encoder):
    model, inputs = encoder
    result = fold(model, inputs, registry, "fx(bn_fold,bn_fold)")
    assert result.records[0].stats == {
        "folded": {
            "SparseConv3d+BatchNorm1d": 1,
            "SparseInverseConv3d+BatchNorm1d": 1,
            "SubMConv3d+BatchNorm1d": 3,
        },
        "skipped": [],
    }
    assert [r.modified for r in result.records] == [True, False]
    modules = list(result.ir.module.modules())
    assert not any(isinstance(m, nn.BatchNorm1d) for m in modules)
    assert sum(isinstance(m, SparseConvBias) for m in modules) == 5  # CPU: bias outside
    assert all(m.bias is None for m in modules if isinstance(m, SparseConvolution))
    torch.testing.assert_close(
        run(result.ir.module, inputs), run(model, inputs), rtol=1e-4, atol=1e-5
    )
    assert model.conv_input[1].__class__ is nn.BatchNorm1d  # the caller's model is untouched
    golden("bn_fold_tiny_sparse.fx", result.ir)


def test_encoder_fp64_matches_to_1e_10(registry, encoder):
    model, (features, coors) = encoder
    model, inputs = model.double(), (features.double(), coors)
    result = fold(model, inputs, registry)
    torch.testing.assert_close(
        run(result.ir.module, inputs), run(model, inputs), rtol=1e-10, atol=1e-12
    )


def test_bias_inside_puts_the_folded_bias_in_the_conv_and_simplifies_the_graph(registry, encoder):
    model, inputs = encoder
    outside = fold(model, inputs, registry, "fx(bn_fold)").ir.module
    inside = fold(model, inputs, registry, "fx(bn_fold{sparse_bias=inside})").ir.module
    assert not any(isinstance(m, (nn.BatchNorm1d, SparseConvBias)) for m in inside.modules())
    torch.testing.assert_close(inside.block.conv2.bias, outside.block.bn2.bias)
    torch.testing.assert_close(
        inside.get_submodule("down.0").weight, outside.get_submodule("down.0").weight
    )
    code = inside.code
    assert "block_bn2" not in code and "conv_input_1" not in code
    # spconv adds an eval-mode bias only on CUDA; in train mode it adds it on CPU too, which
    # lets the inside layout be checked here (BatchNorm is gone, so train mode changes nothing
    # else).
    for m in inside.modules():
        if isinstance(m, SparseConvolution):
            m.train()
    torch.testing.assert_close(run(inside, inputs), run(model, inputs), rtol=1e-4, atol=1e-5)


def test_fx_file_of_a_folded_sparse_model_round_trips(tmp_path, registry, encoder):
    model, inputs = encoder
    ir = fold(model, inputs, registry).ir
    ir.save(tmp_path / "folded.pt")
    loaded = FxIR.load(tmp_path / "folded.pt", registry.trace_rules())
    assert loaded.fingerprint() == ir.fingerprint()
    torch.testing.assert_close(run(loaded.module, inputs), run(model, inputs), rtol=1e-4, atol=1e-5)


# ---- other shapes of the pattern -----------------------------------------------------------------
class DirectSparseBatchNorm(nn.Module):
    """spconv's SparseBatchNorm is called on the sparse tensor itself, not on its features."""

    def __init__(self):
        super().__init__()
        self.conv = spconv.SubMConv3d(4, 6, 3, padding=1, bias=False, indice_key="a")
        self.bn = spconv.SparseBatchNorm(6)
        self.relu = spconv.SparseReLU()

    def forward(self, features, coors):
        return self.relu(self.bn(self.conv(sparse_input(features, coors)))).dense()


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_sparse_batchnorm_on_the_sparse_tensor_folds(registry, where):
    model, _ = seeded(DirectSparseBatchNorm, seed=5)
    inputs = random_voxels(seed=6)
    result = fold(model.eval(), inputs, registry, f"fx(bn_fold{{sparse_bias={where}}})")
    assert result.records[0].stats["folded"] == {"SubMConv3d+SparseBatchNorm": 1}
    folded = result.ir.module
    if where == "inside":
        folded.conv.train()  # see the bias-inside test: spconv adds a CPU bias in train mode
    torch.testing.assert_close(run(folded, inputs), run(model, inputs), rtol=1e-4, atol=1e-5)


class ObservedFeatures(nn.Module):
    """The conv's unfolded features are read again after the BN: folding would change them."""

    def __init__(self):
        super().__init__()
        self.conv = spconv.SubMConv3d(4, 4, 3, padding=1, bias=False, indice_key="a")
        self.bn = nn.BatchNorm1d(4)

    def forward(self, features, coors):
        out = self.conv(sparse_input(features, coors))
        normed = out.replace_feature(self.bn(out.features))
        return normed.features + out.features


def test_observed_unfolded_features_are_not_folded_and_the_reason_is_reported(registry):
    model, _ = seeded(ObservedFeatures, seed=7)
    inputs = random_voxels(seed=8)
    result = fold(model.eval(), inputs, registry)
    record = result.records[0]
    assert record.modified is False
    assert record.stats["skipped"] == [
        {
            "batchnorm": "bn",
            "into": "conv",
            "reason": "the unfolded features of conv are also used by getattr_3",
        }
    ]


def test_sparse_sequential_with_to_dense_and_dense_layers_traces_and_folds(registry):
    def build():
        return spconv.SparseSequential(
            spconv.SparseConv3d(4, 6, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm1d(6),
            nn.ReLU(),
            spconv.ToDense(),
            nn.Conv3d(6, 3, 1),
            nn.BatchNorm3d(3),
        )

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = build()

        def forward(self, features, coors):
            return self.body(sparse_input(features, coors))

    model, _ = seeded(Net, seed=9)
    inputs = random_voxels(seed=10)
    result = fold(model.eval(), inputs, registry)
    assert result.records[0].stats["folded"] == {
        "Conv3d+BatchNorm3d": 1,
        "SparseConv3d+BatchNorm1d": 1,
    }
    torch.testing.assert_close(
        run(result.ir.module, inputs), run(model, inputs), rtol=1e-4, atol=1e-5
    )


# ---- property test -------------------------------------------------------------------------------
KINDS = {"subm": spconv.SubMConv3d, "sparse": spconv.SparseConv3d}


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["subm", "sparse", "sparse+inverse"]),
    cin=st.integers(1, 5),
    cout=st.integers(1, 6),
    kernel=st.tuples(*[st.integers(1, 3)] * 3),
    stride=st.integers(1, 2),
    bias=st.booleans(),
    affine=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_random_sparse_convs(kind, cin, cout, kernel, stride, bias, affine, seed):
    from bevcc.plugins import load_plugins

    registry = load_plugins(autoload=False).registry
    torch.manual_seed(seed)
    first = kind.split("+")[0]
    if first == "subm":  # submanifold convs need odd kernels to keep voxels in place
        kernel = tuple(k | 1 for k in kernel)
    conv = KINDS[first](
        cin,
        cout,
        kernel,
        stride=1 if first == "subm" else stride,
        padding=tuple(k // 2 for k in kernel),
        bias=bias,
        indice_key="k",
    )
    layers = [conv, nn.BatchNorm1d(cout, affine=affine)]
    if kind == "sparse+inverse":
        layers += [
            spconv.SparseInverseConv3d(cout, cin, kernel, bias=False, indice_key="k"),
            nn.BatchNorm1d(cin, affine=affine),
        ]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = spconv.SparseSequential(*layers)

        def forward(self, features, coors):
            return self.body(sparse_input(features, coors)).dense()

    model = Net().eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(seed))
    conv.train()  # a conv bias runs on CPU only in train mode (BatchNorm stays in eval)
    inputs = random_voxels(seed=seed, count=60, channels=cin)
    result = fold(model, inputs, registry)
    assert sum(result.records[0].stats["folded"].values()) == len(layers) // 2
    torch.testing.assert_close(
        run(result.ir.module, inputs), run(model, inputs), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("cls", [spconv.SubMConv3d, spconv.SparseConv3d])
def test_1x1_sparse_conv_folds_along_the_axis_spconv_actually_computes_with(registry, cls):
    # spconv 2.x multiplies 1x1 features by the weight memory viewed as [Cin, Cout], not by
    # its declared [Cout, 1, 1, 1, Cin] (spconv#450); with Cin != Cout a fold along the declared
    # axis would scale the wrong numbers.
    def build():
        return spconv.SparseSequential(cls(3, 5, 1, bias=False, indice_key="a"), nn.BatchNorm1d(5))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = build()

        def forward(self, features, coors):
            return self.body(sparse_input(features, coors)).dense()

    model, _ = seeded(Net, seed=11)
    inputs = random_voxels(seed=12, channels=3)
    assert model.body[0].conv1x1
    result = fold(model.eval(), inputs, registry)
    torch.testing.assert_close(
        run(result.ir.module, inputs), run(model, inputs), rtol=1e-4, atol=1e-5
    )


def test_cli_compiles_the_registered_sparse_reference_model(tmp_path):
    from tests.conftest import run_bevcc

    out = tmp_path / "folded.pt"
    proc = run_bevcc("compile", "tiny_sparse", "--pipeline", "fx(bn_fold)", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [  # spconv's own notices are filtered; nothing else
        (
            "fx(bn_fold): folded 5 BatchNorm (SparseConv3d+BatchNorm1d 1, "
            "SparseInverseConv3d+BatchNorm1d 1, SubMConv3d+BatchNorm1d 3), skipped 0"
        ),
        f"wrote {out}",
    ]
    assert FxIR.load(out).node_count() > 0
