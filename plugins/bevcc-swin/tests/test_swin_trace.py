"""The model traces only with the plugin's leaf function, and the traced graph is the model."""

import pytest
import torch
from bevcc_swin.model import SwinBackbone, SwinConfig
from bevcc_swin.windows import MASKED, shifted_window_mask

import bevcc
from bevcc.plugins import load_plugins


def test_without_the_leaf_function_tracing_fails_with_one_line(swin):
    core_only = load_plugins(autoload=False).registry
    with pytest.raises(bevcc.InputError) as failure:
        bevcc.compile(swin, pipeline="fx(dce)", registry=core_only)
    assert "\n" not in str(failure.value)
    assert "SwinBackbone" in str(failure.value)


def test_with_the_plugin_the_mask_is_one_node_and_outputs_match(registry, swin):
    model, (image,) = swin
    result = bevcc.compile(swin, pipeline="fx(dce)", registry=registry)
    masks = [n for n in result.ir.graph.nodes if n.target is shifted_window_mask]
    assert len(masks) == 2  # one per shifted block: the second block of each stage
    with torch.no_grad():
        torch.testing.assert_close(result.ir.module(image), model(image), rtol=0, atol=0)


def test_shifted_window_mask_separates_the_regions_a_roll_brings_together():
    mask = shifted_window_mask(14, 14, window=7, shift=3)
    assert mask.shape == (4, 49, 49)
    assert set(mask.unique().tolist()) == {0.0, MASKED}
    assert bool((mask[0] == 0).all())  # the top-left window holds one region only
    # The bottom-right window holds four regions (3x3-token blocks meet there): a token in
    # its first row/col (region "inside") must not see the last token (wrapped corner).
    assert mask[3, 0, 48] == MASKED and mask[3, 48, 48] == 0


def test_other_input_sizes_trace_with_the_same_rules(registry):
    torch.manual_seed(0)
    model = SwinBackbone(SwinConfig(depths=(2,), heads=(2,))).eval()
    image = torch.randn(1, 3, 56, 56)
    result = bevcc.compile((model, (image,)), pipeline="fx(dce)", registry=registry)
    with torch.no_grad():
        torch.testing.assert_close(result.ir.module(image), model(image), rtol=0, atol=0)
