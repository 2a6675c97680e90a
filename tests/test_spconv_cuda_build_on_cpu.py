"""spconv's CUDA build gives every convolution the implicit-GEMM algorithm, which runs on CUDA
only; bevcc runs sparse models on CPU as well (specialization on the example, libspconv export,
its interpreter). Measured on the H200: every sparse compile failed there with "implicit gemm only
support cuda". Here the CPU build stands in: the layers are set to implicit GEMM as the CUDA build
sets them, and bevcc must still compile them, with the numbers of the native algorithm."""

import torch
from spconv.core import ConvAlgo
from spconv.pytorch.conv import SparseConvolution

import bevcc
from bevcc.plugins import load_plugins
from bevcc.reference.tiny_sparse import random_voxels, tiny_sparse
from bevcc.sparse.interpreter import LibspconvInterpreter


def _as_cuda_build_makes_them(model: torch.nn.Module) -> int:
    layers = [m for m in model.modules() if isinstance(m, SparseConvolution)]
    for layer in layers:
        layer.algo = ConvAlgo.MaskImplicitGemm
    return len(layers)


def test_implicit_gemm_layers_compile_on_cpu_with_native_numbers():
    registry = load_plugins(autoload=False).registry
    registry.resolve()
    native, inputs = tiny_sparse()
    implicit, _ = tiny_sparse()
    assert _as_cuda_build_makes_them(implicit) > 0
    with torch.no_grad():
        want = native(*inputs)
        got = implicit(*inputs)  # failed before: spconv asserts CUDA for implicit GEMM
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    result = bevcc.compile(
        (implicit, inputs), pipeline="fx(bn_fold),export_libspconv", registry=registry
    )
    interpreter = LibspconvInterpreter(result.ir.model)
    features, coors = random_voxels(3)
    with torch.no_grad():
        reference = native(features, coors)
    (out,) = interpreter(features, coors)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)
    assert all(layer.algo == ConvAlgo.MaskImplicitGemm for layer in implicit.modules()
               if isinstance(layer, SparseConvolution))  # fmt: skip  # the user's model untouched
