"""The quantizer, the calibrators and the quant config, against independent references."""

import numpy as np
import pytest
import torch

from bevcc.errors import InputError, UsageError
from bevcc.quant import scales
from bevcc.quant.calibrators import make_calibrator
from bevcc.quant.config import QuantConfig, load_quant_config
from bevcc.quant.quantizer import QuantizerError, TensorQuantizer


def reference_fake_quant(x: np.ndarray, amax: np.ndarray, axis=None) -> np.ndarray:
    """Symmetric INT8 in numpy: round half to even, clamp to [-128, 127], zero point 0."""
    scale = np.float32(amax) / np.float32(127)
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
    return (np.clip(np.round(x / scale), -128, 127) * scale).astype(np.float32)


def calibrated(x, axis=None, calibrator="max"):
    q = TensorQuantizer(axis=axis, calibrator=calibrator)
    q.start_calibration()
    q(x)
    q.finish_calibration()
    return q


def test_per_tensor_and_per_channel_match_a_numpy_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 5, 5, generator=g) * 3
    q = calibrated(x)
    assert float(q.amax) == float(x.abs().max())
    np.testing.assert_array_equal(q(x).numpy(), reference_fake_quant(x.numpy(), q.amax.numpy()))
    qc = calibrated(x, axis=1)
    assert qc.amax.shape == (6,)
    np.testing.assert_array_equal(
        qc(x).numpy(), reference_fake_quant(x.numpy(), qc.amax.numpy(), axis=1)
    )
    # values beyond amax clamp to +-127 steps
    wide = torch.tensor([-1e3, 1e3])
    np.testing.assert_allclose(
        q(wide).numpy(), [-128 * float(q.amax) / 127, 127 * float(q.amax) / 127], rtol=1e-6
    )


def test_all_zero_channel_is_floored_and_reported_never_a_zero_scale():
    w = torch.randn(3, 4)
    w[1] = 0
    q = TensorQuantizer(axis=0)
    floored, total = q.set_amax(w.abs().amax(dim=1))
    assert (floored, total) == (1, 3)
    assert float(q.amax[1]) == np.float32(scales.AMAX_FLOOR)
    assert not scales.bad_scale(q.amax.numpy() / 127)
    assert torch.equal(q(w)[1], torch.zeros(4))


def test_states_disabled_uncalibrated_and_straight_through_gradient():
    x = torch.linspace(-2, 2, 9, requires_grad=True)
    with pytest.raises(QuantizerError, match="has no amax"):
        TensorQuantizer()(x)
    assert TensorQuantizer(enabled=False)(x) is x
    q = TensorQuantizer()
    q.set_amax(torch.tensor(1.0))
    q(x).sum().backward()
    # straight-through inside the range, zero where clamped
    assert x.grad.tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]


def test_learnable_amax_gets_a_gradient_and_stays_positive():
    q = TensorQuantizer()
    q.set_amax(torch.tensor(1.0))
    q.learn_amax()
    q.train()
    x = torch.randn(100) * 2
    ((q(x) - x) ** 2).mean().backward()
    assert isinstance(q.amax, torch.nn.Parameter) and q.amax.grad is not None
    assert float(q.amax.grad) < 0  # clipping at 1.0 hurts: the loss wants a larger amax


def test_max_calibrator_per_channel_over_batches():
    c = make_calibrator("max", axis=0)
    c.collect(torch.tensor([[1.0, -5.0], [0.5, 0.25]]))
    c.collect(torch.tensor([[-2.0, 1.0], [0.1, 0.0]]))
    assert c.compute_amax().tolist() == [5.0, 0.5]


@pytest.mark.parametrize(
    "method, low, high",
    [
        ("histogram:percentile", 3.5, 4.2),  # 99.99th percentile of |N(0,1)| is 3.89
        ("histogram:mse", 2.5, 4.7),  # modelopt 0.47 unpatched returns its first bin, 0.26
        ("histogram:entropy", 2.5, 5.0),
    ],
)
def test_modelopt_histogram_calibrators_give_sensible_amax_for_a_gaussian(method, low, high):
    c = make_calibrator(method, axis=None)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        c.collect(torch.randn(100_000, generator=g))
    assert low < float(c.compute_amax()) < high


def test_unknown_calibrator_and_per_channel_histogram_are_usage_errors():
    with pytest.raises(UsageError, match="unknown calibrator 'minmax'"):
        make_calibrator("minmax", None)
    with pytest.raises(UsageError, match="per tensor"):
        make_calibrator("mse", 0)


def test_quant_config_from_toml_and_yaml_resolves_defaults_ops_and_overrides(tmp_path):
    toml = tmp_path / "q.toml"
    toml.write_text(
        'calibrator = "mse"\n[ops.conv_transpose]\nper_channel = false\n'
        '[[overrides]]\nmatch = "head*"\nenabled = false\n'
        '[[overrides]]\nmatch = "stem.0"\ncalibrator = "max"\n'
    )
    yaml = tmp_path / "q.yaml"
    yaml.write_text(
        "calibrator: mse\nops:\n  conv_transpose:\n    per_channel: false\n"
        "overrides:\n  - match: head*\n    enabled: false\n"
        "  - match: stem.0\n    calibrator: max\n"
    )
    for path in (toml, yaml):
        config = load_quant_config(path)
        assert config.resolve("block.conv1", "conv").calibrator == "histogram:mse"
        assert config.resolve("up", "conv_transpose").per_channel is False
        assert config.resolve("head", "conv").enabled is False
        assert config.resolve("stem.0", "conv").calibrator == "max"
        assert config.unused_overrides(["stem.0", "block.conv1"]) == ["head*"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"bits": 8}, "unknown quant setting 'bits'"),
        ({"num_bits": 4}, "num_bits must be 8"),
        ({"ops": {"pool": {}}}, "unknown op type 'pool'"),
        ({"overrides": [{"enabled": False}]}, "needs `match`"),
        ({"calibrator": "minmax"}, "unknown calibrator"),
    ],
)
def test_bad_quant_config_is_one_usage_error(data, message):
    with pytest.raises(UsageError, match=message):
        QuantConfig.from_dict(data)


def test_unreadable_config_files_are_input_errors(tmp_path):
    bad = tmp_path / "q.yaml"
    bad.write_text("calibrator: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_quant_config(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_quant_config(tmp_path / "missing.toml")


def test_weight_fake_quant_is_reused_until_the_weight_or_amax_changes():
    weight = torch.nn.Parameter(torch.randn(4, 3))
    q = TensorQuantizer(axis=0)
    q.set_amax(weight.detach().abs().amax(dim=1))
    with torch.no_grad():
        first = q(weight)
        assert q(weight) is first  # reused: no autograd, nothing changed
        weight.mul_(2)  # an optimizer step changes the weight in place
        second = q(weight)
        assert second is not first
        np.testing.assert_array_equal(
            second.numpy(), reference_fake_quant(weight.numpy(), q.amax.numpy(), axis=0)
        )
        q.set_amax(q.amax * 2)
        assert q(weight) is not second
    out = q(weight)  # with autograd: computed fresh, and the gradient reaches the weight
    out.sum().backward()
    assert weight.grad is not None
