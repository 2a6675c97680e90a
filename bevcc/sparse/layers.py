"""What kind of spconv layer a module is, read without importing spconv (several passes ask)."""

from __future__ import annotations

import sys


def is_sparse_conv(module) -> bool:
    # No spconv import here: if spconv was never imported, no module can be one of its convs.
    conv_module = sys.modules.get("spconv.pytorch.conv")
    return conv_module is not None and isinstance(module, conv_module.SparseConvolution)


def weight_layout(conv) -> str:
    """spconv 2.x declares [Cout, k0, k1, k2, Cin], but its PyTorch 1x1 path multiplies by the
    weight's memory viewed as [Cin, Cout] (spconv issue #450). Folding follows what PyTorch
    computes, so the folded model matches the unfolded one; exporters must do the same."""
    return "in_out" if getattr(conv, "conv1x1", False) else "out_first"
