"""Quantized spconv convolutions: spconv's own classes with a fake-quantized weight.

As with the dense layers (bevcc.quant.modules), sparse_conv_quant swaps the class in place, so the
module stays a SubMConv3d / SparseConv3d / ... for isinstance checks, spconv's rulebooks and
state_dicts. The weight quantizer works per output channel of the weight as spconv computes with
it: axis 0 of [Cout, k0, k1, k2, Cin], except for 1x1 convs, which spconv multiplies with the
weight's memory read as [Cin, Cout] (spconv#450).
"""

from __future__ import annotations

import spconv.pytorch as spconv
from spconv.pytorch.conv import SparseConvolution

from bevcc.quant.quantizer import TensorQuantizer


class _QuantSparse:
    def quantized_weight(self):
        if self.conv1x1:
            flat = self.weight.reshape(self.in_channels, self.out_channels)
            return self.weight_quantizer(flat).reshape(self.weight.shape)
        return self.weight_quantizer(self.weight)

    def forward(self, input, add_input=None):
        return self._conv_forward(
            self.training,
            input,
            self.quantized_weight(),
            self.bias,
            add_input,
            name=self.name,
            sparse_unique_name=self._sparse_unique_name,
            act_type=self.act_type,
            act_alpha=self.act_alpha,
            act_beta=self.act_beta,
        )

    def extra_repr(self) -> str:
        quantizer = getattr(self, "weight_quantizer", None)
        own = super().extra_repr()
        return own if quantizer is None else f"{own}, weight: {quantizer.extra_repr()}"


class QuantSubMConv3d(_QuantSparse, spconv.SubMConv3d):
    pass


class QuantSparseConv3d(_QuantSparse, spconv.SparseConv3d):
    pass


class QuantSparseInverseConv3d(_QuantSparse, spconv.SparseInverseConv3d):
    pass


class QuantSparseConvTranspose3d(_QuantSparse, spconv.SparseConvTranspose3d):
    pass


QUANT_SPARSE_CLASSES = {
    spconv.SubMConv3d: QuantSubMConv3d,
    spconv.SparseConv3d: QuantSparseConv3d,
    spconv.SparseInverseConv3d: QuantSparseInverseConv3d,
    spconv.SparseConvTranspose3d: QuantSparseConvTranspose3d,
}


def weight_axis(conv: SparseConvolution) -> int:
    return 1 if conv.conv1x1 else 0


def quantize_sparse_conv(conv: SparseConvolution) -> int:
    """Swap in the quantized class, set the weight quantizer's per-channel amax (max |w| per
    output channel); returns how many channels were all zero (floored)."""
    conv.__class__ = QUANT_SPARSE_CLASSES[type(conv)]
    axis = weight_axis(conv)
    weight = conv.weight.detach()
    if conv.conv1x1:
        weight = weight.reshape(conv.in_channels, conv.out_channels)
    dims = [d for d in range(weight.dim()) if d != axis]
    quantizer = TensorQuantizer(axis=axis)
    floored, _ = quantizer.set_amax(weight.abs().amax(dim=dims))
    conv.weight_quantizer = quantizer
    return floored
