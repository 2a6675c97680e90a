"""Quantized layers: torch's own layer classes with a fake-quantized weight.

qdq_insert turns an nn.Conv2d into a QuantConv2d in place (same parameters, same state_dict keys
plus `weight_quantizer.amax`), so the result is still an nn.Conv2d for isinstance checks and for
users' training loops. Input quantizers are separate graph nodes, not part of these layers: which
edges share one is a graph decision (quantizer_unify), not a layer's.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from bevcc.quant.quantizer import TensorQuantizer


class _ShowsWeightQuantizer:
    """Dumps and reprs state the weight quantizer next to the layer's own settings."""

    def extra_repr(self) -> str:
        quantizer = getattr(self, "weight_quantizer", None)
        own = super().extra_repr()
        return own if quantizer is None else f"{own}, weight: {quantizer.extra_repr()}"


class QuantConv1d(_ShowsWeightQuantizer, nn.Conv1d):
    def forward(self, x):
        return self._conv_forward(x, self.weight_quantizer(self.weight), self.bias)


class QuantConv2d(_ShowsWeightQuantizer, nn.Conv2d):
    def forward(self, x):
        return self._conv_forward(x, self.weight_quantizer(self.weight), self.bias)


class QuantConv3d(_ShowsWeightQuantizer, nn.Conv3d):
    def forward(self, x):
        return self._conv_forward(x, self.weight_quantizer(self.weight), self.bias)


def _transposed_forward(layer, x, output_size, functional, dims: int):
    output_padding = layer._output_padding(
        x, output_size, layer.stride, layer.padding, layer.kernel_size, dims, layer.dilation
    )
    return functional(
        x,
        layer.weight_quantizer(layer.weight),
        layer.bias,
        layer.stride,
        layer.padding,
        output_padding,
        layer.groups,
        layer.dilation,
    )


class QuantConvTranspose1d(_ShowsWeightQuantizer, nn.ConvTranspose1d):
    def forward(self, x, output_size=None):
        return _transposed_forward(self, x, output_size, F.conv_transpose1d, 1)


class QuantConvTranspose2d(_ShowsWeightQuantizer, nn.ConvTranspose2d):
    def forward(self, x, output_size=None):
        return _transposed_forward(self, x, output_size, F.conv_transpose2d, 2)


class QuantConvTranspose3d(_ShowsWeightQuantizer, nn.ConvTranspose3d):
    def forward(self, x, output_size=None):
        return _transposed_forward(self, x, output_size, F.conv_transpose3d, 3)


class QuantLinear(_ShowsWeightQuantizer, nn.Linear):
    def forward(self, x):
        return F.linear(x, self.weight_quantizer(self.weight), self.bias)


QUANT_CLASSES: dict[type, type] = {
    nn.Conv1d: QuantConv1d,
    nn.Conv2d: QuantConv2d,
    nn.Conv3d: QuantConv3d,
    nn.ConvTranspose1d: QuantConvTranspose1d,
    nn.ConvTranspose2d: QuantConvTranspose2d,
    nn.ConvTranspose3d: QuantConvTranspose3d,
    nn.Linear: QuantLinear,
}
OP_TYPE = {
    nn.Conv1d: "conv",
    nn.Conv2d: "conv",
    nn.Conv3d: "conv",
    nn.ConvTranspose1d: "conv_transpose",
    nn.ConvTranspose2d: "conv_transpose",
    nn.ConvTranspose3d: "conv_transpose",
    nn.Linear: "linear",
}


def weight_axis(layer: nn.Module, per_channel: bool, conv_transpose_axis: int) -> int | None:
    """Axis of the weight's per-channel scales (docs/tensorrt_qdq.md).

    Conv and Linear weights are [Cout, ...]: axis 0. ConvTranspose weights are
    [Cin, Cout/groups, k...]: TensorRT's kernels take per-channel scales only on axis 0 of that
    layout (TensorRT#2380), so that is the default; onnxruntime, PPQ and modelopt's ONNX path use
    axis 1 (qdq_insert{conv_transpose_axis=1}), which TensorRT may reject.
    """
    if not per_channel:
        return None
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):
        return conv_transpose_axis
    return 0


def quantize_layer(layer: nn.Module, axis: int | None) -> int:
    """Make `layer` (exactly one of QUANT_CLASSES' keys) quantize its weight; amax = max |w|.

    Returns how many weight channels were all zero (their amax is floored, see quant.scales).
    """
    quant_class = QUANT_CLASSES[type(layer)]
    layer.__class__ = quant_class
    quantizer = TensorQuantizer(axis=axis)
    weight = layer.weight.detach()
    if axis is None:
        amax = weight.abs().max()
    else:
        dims = [d for d in range(weight.dim()) if d != axis]
        amax = weight.abs().amax(dim=dims)
    floored, _ = quantizer.set_amax(amax)
    layer.weight_quantizer = quantizer
    return floored


def is_quantized_layer(module: nn.Module) -> bool:
    return type(module) in QUANT_CLASSES.values()
