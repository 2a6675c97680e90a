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


def test_quantized_implicit_gemm_layers_run_on_cpu_like_native_ones():
    """bevcc's quantized convolutions override forward; sharing an indice key with a float one
    they must run the same algorithm (spconv asserts so): the H200 failed sparse_conv_quant so."""
    registry = load_plugins(autoload=False).registry
    registry.resolve()
    model, inputs = tiny_sparse()
    _as_cuda_build_makes_them(model)
    calib = [
        {"voxel_features": f.numpy(), "coors": c.numpy()} for f, c in map(random_voxels, range(2))
    ]
    native, _ = tiny_sparse()
    outputs = []
    for layers in (model, native):
        result = bevcc.compile(
            (layers, inputs), pipeline="fx(bn_fold,sparse_conv_quant)", calib=calib,
            registry=registry,
        )  # fmt: skip
        with torch.no_grad():
            outputs.append(result.ir.module(*inputs))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)  # the same computation


def test_a_bias_folded_inside_runs_on_cpu_in_eval_mode_and_exports():
    """bn_fold puts the bias inside the convolution on CUDA (sparse_bias=auto); spconv's CPU
    kernels take no bias, and export_libspconv then failed on the H200 ("bias and act don't
    support cpu"). On CPU the bias is added after the convolution."""
    registry = load_plugins(autoload=False).registry
    registry.resolve()
    model, inputs = tiny_sparse()
    result = bevcc.compile(
        (model, inputs), pipeline="fx(bn_fold{sparse_bias=inside})", registry=registry
    )
    folded = result.ir.module.eval()
    assert any(m.bias is not None for m in folded.modules() if isinstance(m, SparseConvolution))
    with torch.no_grad():
        torch.testing.assert_close(folded(*inputs), model(*inputs), rtol=1e-4, atol=1e-5)
    exported = bevcc.compile(
        (model, inputs), pipeline="fx(bn_fold{sparse_bias=inside}),export_libspconv",
        registry=registry,
    )  # fmt: skip
    assert exported.ir.kind == "libspconv"
