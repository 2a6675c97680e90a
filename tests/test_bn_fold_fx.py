"""fx bn_fold: numerics per pattern against the unfolded model, skip rules, goldens."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import bevcc
from bevcc.errors import PassError
from bevcc.ir.fx import FxIR
from bevcc.reference.seeding import randomize_batchnorm


def fold(model, example, registry, dtype=torch.float32):
    model = model.to(dtype).eval()
    example = tuple(t.to(dtype) for t in example)
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    result = bevcc.compile((model, example), pipeline="fx(bn_fold)", registry=registry)
    with torch.no_grad():
        return result, model(*example), result.ir.module(*example)


def _bn(dims, channels, affine=True):
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](channels, affine=affine)


CASES = {
    "conv1d": (nn.Conv1d(4, 6, 3, padding=1), 1, (2, 4, 9)),
    "conv2d_groups_dilation_nobias": (
        nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2, bias=False),
        2,
        (2, 4, 7, 7),
    ),
    "conv2d_reflect_stride": (
        nn.Conv2d(3, 5, 3, stride=2, padding=1, padding_mode="reflect"),
        2,
        (1, 3, 9, 9),
    ),
    "conv3d": (nn.Conv3d(2, 4, (1, 3, 3), padding=(0, 1, 1)), 3, (1, 2, 3, 5, 5)),
    "convtranspose1d": (nn.ConvTranspose1d(4, 6, 3, stride=2), 1, (2, 4, 5)),
    "convtranspose2d_groups_outpad": (
        nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=1, groups=2, bias=False),
        2,
        (1, 4, 5, 5),
    ),
    "convtranspose3d_groups": (nn.ConvTranspose3d(6, 9, 2, stride=2, groups=3), 3, (1, 6, 2, 3, 3)),
    "linear": (nn.Linear(5, 7), 1, (4, 5)),
}


def _seq(name, affine=True):
    layer, dims, shape = CASES[name]
    channels = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    return nn.Sequential(layer, _bn(dims, channels, affine)), (torch.randn(shape),)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("affine", [True, False])
def test_fp32_numerics_per_pattern(name, affine, registry):
    torch.manual_seed(0)
    model, example = _seq(name, affine)
    result, expected, got = fold(model, example, registry)
    assert sum(result.records[0].stats["folded"].values()) == 1
    assert not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in result.ir.module.modules()
    )
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fp64_numerics_per_pattern(name, registry):
    torch.manual_seed(0)
    model, example = _seq(name)
    _, expected, got = fold(model, example, registry, torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    groups=st.sampled_from([1, 2, 3]),
    per_group_in=st.integers(1, 3),
    per_group_out=st.integers(1, 3),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    transposed=st.booleans(),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_random_conv_and_deconv(
    groups, per_group_in, per_group_out, kernel, stride, transposed, bias, seed
):
    from bevcc.plugins import load_plugins

    torch.manual_seed(seed)
    cin, cout = groups * per_group_in, groups * per_group_out
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    model = nn.Sequential(
        cls(cin, cout, kernel, stride=stride, groups=groups, bias=bias), nn.BatchNorm2d(cout)
    )
    bn = model[1]
    generator = torch.Generator().manual_seed(seed)
    bn.running_mean.copy_(torch.randn(cout, generator=generator) * 3)
    bn.running_var.copy_(torch.rand(cout, generator=generator) * 10 + 1e-3)
    bn.weight.data.copy_(torch.randn(cout, generator=generator) * 2)
    bn.bias.data.copy_(torch.randn(cout, generator=generator))
    example = (torch.randn(2, cin, 6, 6, dtype=torch.float64),)
    registry = load_plugins(autoload=False).registry
    _, expected, got = fold(model, example, registry, torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


class Branchy(nn.Module):
    """conv->bn folds; conv2's raw output is also returned, so conv2->bn2 must not fold."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.shared, self.bn3, self.bn4 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.BatchNorm2d(4)

    def forward(self, x):
        a = self.conv2(self.bn(self.conv(x)))
        b = self.bn3(self.shared(a)) + self.bn4(self.shared(a))
        return self.bn2(a) + b, a


def test_skips_are_reported_with_their_reason(golden, registry):
    result, expected, got = fold(Branchy(), (torch.randn(1, 3, 4, 4),), registry)
    stats = result.records[0].stats
    assert stats["folded"] == {"Conv2d+BatchNorm2d": 1}
    shared = "the layer is called more than once (its weights serve several places)"
    assert stats["skipped"] == [  # in graph order
        {"batchnorm": "bn3", "into": "shared", "reason": shared},
        {"batchnorm": "bn4", "into": "shared", "reason": shared},
        {
            "batchnorm": "bn2",
            "into": "conv2",
            "reason": "the unfolded output of conv2 is also used by output, shared, shared_1",
        },
    ]
    assert result.records[0].report == [
        "folded 1 BatchNorm (Conv2d+BatchNorm2d 1), skipped 3",
        f"  kept bn3 (after shared): {shared}",
        f"  kept bn4 (after shared): {shared}",
        (
            "  kept bn2 (after conv2): the unfolded output of conv2 is also used by output, shared, "
            "shared_1"
        ),
    ]
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
    golden("bn_fold_branchy.fx", result.ir)


def test_training_mode_bn_is_skipped_with_a_warning(registry):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    model[1].train()
    with pytest.warns(UserWarning, match="bn_fold: 1 not folded: BatchNorm is in training mode"):
        result = bevcc.compile(
            (model, (torch.randn(2, 3, 4, 4),)), pipeline="fx(bn_fold)", registry=registry
        )
    assert result.records[0].modified is False


def test_linear_with_3d_output_is_not_folded(registry):
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    result = bevcc.compile(
        (model, (torch.randn(2, 4, 4),)), pipeline="fx(bn_fold)", registry=registry
    )
    assert result.records[0].stats["skipped"][0]["reason"].startswith("Linear output is not")


def test_nothing_to_fold_is_unmodified(registry):
    result = bevcc.compile(
        (nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()), (torch.randn(1, 3, 2, 2),)),
        pipeline="fx(bn_fold,bn_fold)",
        registry=registry,
    )
    assert [r.modified for r in result.records] == [False, False]


def test_reference_model_folds_every_bn_and_stays_numerically_equal(golden, registry, tiny):
    model, example = tiny
    result = bevcc.compile(tiny, pipeline="fx(bn_fold,bn_fold)", registry=registry)
    assert result.records[0].stats["folded"] == {
        "Conv2d+BatchNorm2d": 5,
        "ConvTranspose2d+BatchNorm2d": 1,
    }
    assert [r.modified for r in result.records] == [True, False]
    with torch.no_grad():
        torch.testing.assert_close(
            result.ir.module(*example), model(*example), rtol=1e-4, atol=1e-5
        )
    golden("bn_fold_tiny_cnn.fx", result.ir)


def test_plugin_registered_conv_like_type_is_folded_by_isinstance(registry):
    class MyConv(nn.Conv2d):
        pass

    registry.add_leaf_module(MyConv)  # outside torch.nn, fx would trace into it otherwise
    model = nn.Sequential(MyConv(3, 4, 1), nn.BatchNorm2d(4))
    result, expected, got = fold(model, (torch.randn(1, 3, 2, 2),), registry)
    assert result.records[0].stats["folded"] == {"MyConv+BatchNorm2d": 1}  # by isinstance
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 3))
            self.bias = None
            self.out_channels = 4

        def forward(self, x):
            return torch.einsum("oc,nchw->nohw", self.weight, x)

    registry.add_leaf_module(Custom)
    registry.add_foldable(Custom, "out_first")
    model = nn.Sequential(Custom(), nn.BatchNorm2d(4))
    ir = FxIR.trace(model.eval(), (torch.randn(1, 3, 2, 2),), registry.trace_rules())
    result = bevcc.compile(ir, pipeline="fx(bn_fold)", registry=registry)
    assert result.records[0].stats["folded"] == {"Custom+BatchNorm2d": 1}


def test_a_plugin_type_without_the_needed_attributes_fails_by_name(registry):
    class NoChannels(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 3))

        def forward(self, x):
            return torch.einsum("oc,nchw->nohw", self.weight, x)

    registry.add_leaf_module(NoChannels)
    registry.add_foldable(NoChannels)
    ir = FxIR.trace(
        nn.Sequential(NoChannels(), nn.BatchNorm2d(4)).eval(),
        (torch.randn(1, 3, 2, 2),),
        registry.trace_rules(),
    )
    with pytest.raises(PassError, match="pass 'bn_fold' failed after \\[\\]: AttributeError"):
        bevcc.compile(ir, pipeline="fx(bn_fold)", registry=registry)
