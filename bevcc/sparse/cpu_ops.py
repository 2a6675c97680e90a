"""Correct CPU gather / scatter-add for spconv 2.3.x's gather-GEMM-scatter convolution.

spconv's CPU `scatter_add_cpu` intermittently writes a wrong output row (about 5-15% of SubMConv3d
calls on a 160-voxel input leave one row off by ~0.1-0.5; spconv issue #679 reports the same on CUDA
and CPU). bevcc compares folded against unfolded models and runs deployed sparse files on CPU, so it
swaps the two CPU helpers for torch's index_select / index_add_, which are exact and deterministic.
CUDA paths are untouched: spconv only calls these helpers for CPU tensors.

spconv's CUDA build gives every convolution the implicit-GEMM algorithm, which runs on CUDA only,
yet bevcc runs sparse models on CPU too (tracing and shape folding on the example, exporting,
the libspconv interpreter): measured on the H200 with spconv-cu126, every such model failed with
"implicit gemm only support cuda". A convolution fed CPU features therefore runs spconv's native
(gather-GEMM-scatter) algorithm for that call, which both builds run on CPU; CUDA calls keep theirs.
"""

from __future__ import annotations

import torch

_installed = False


def _as_torch(tv_tensor) -> torch.Tensor:
    return torch.from_numpy(tv_tensor.numpy_view())  # shares memory with the tv tensor


class _CorrectCpuOps:
    """Stands in for spconv's SpconvOps inside spconv.pytorch.ops; delegates everything else."""

    def __init__(self, original):
        self._original = original

    def __getattr__(self, name):
        return getattr(self._original, name)

    @staticmethod
    def gather_cpu(out, features, indices) -> None:
        index = _as_torch(indices).long()
        torch.index_select(_as_torch(features), 0, index, out=_as_torch(out)[: len(index)])

    @staticmethod
    def scatter_add_cpu(out, buffer, indices) -> None:
        index = _as_torch(indices).long()
        _as_torch(out).index_add_(0, index, _as_torch(buffer)[: len(index)])


def install() -> None:
    """Patch spconv.pytorch.ops once per process (idempotent)."""
    global _installed
    if _installed:
        return
    from spconv.pytorch import ops

    ops.SpconvOps = _CorrectCpuOps(ops.SpconvOps)
    _native_algorithm_on_cpu()
    _installed = True


def _native_algorithm_on_cpu() -> None:
    """Patched where every spconv convolution computes (`_conv_forward`), so bevcc's quantized
    convolutions, which override `forward`, get it too: layers sharing an indice key must agree
    on the algorithm."""
    from spconv.core import ConvAlgo
    from spconv.pytorch.conv import SparseConvolution

    conv_forward = SparseConvolution._conv_forward

    def conv_forward_native_on_cpu(self, training, input, weight, bias, *args, **kwargs):
        if input.features.is_cuda:
            return conv_forward(self, training, input, weight, bias, *args, **kwargs)
        if bias is not None and _bias_only(args, kwargs):
            # spconv's CPU kernels take no bias ("cpu don't support act and bias"),
            # so a bias folded inside on CUDA (bn_fold sparse_bias=auto) is added after the
            # convolution: the same sum in another order
            out = conv_forward_native_on_cpu(self, training, input, weight, None, *args, **kwargs)
            return out.replace_feature(out.features + bias)
        if self.algo == ConvAlgo.Native:
            return conv_forward(self, training, input, weight, bias, *args, **kwargs)
        algo, self.algo = self.algo, ConvAlgo.Native
        try:
            return conv_forward(self, training, input, weight, bias, *args, **kwargs)
        finally:
            self.algo = algo

    conv_forward_native_on_cpu.__wrapped__ = conv_forward
    SparseConvolution._conv_forward = conv_forward_native_on_cpu


def _bias_only(args: tuple, kwargs: dict) -> bool:
    """No residual input and no fused activation: the bias can be added after the conv."""
    add_input = args[0] if args else kwargs.get("add_input")
    act = kwargs.get("act_type")
    return add_input is None and len(args) <= 1 and (act is None or act.name == "None_")
