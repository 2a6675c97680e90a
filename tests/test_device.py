"""--device / bevcc.compile(device=...): where passes run the model (bevcc/device.py).

The CPU tests run everywhere: the accepted forms and their errors, `auto` here, a CUDA request on
a machine without CUDA (one line, before the model loads), `--device cpu` writing the default's
bytes, and the device reaching a pass through its context. The GPU tests (`-m gpu`, skipped
without CUDA) compile the same models on cuda and on cpu and compare the files: byte-identical
where the calibration statistics are the same numbers on both, within the stated tolerance where
the GPU's arithmetic rounds them differently.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import bevcc
from bevcc.device import ACCEPTED, DeviceError, check_device, resolve_device
from bevcc.errors import UsageError
from bevcc.pm.pass_base import Pass, PassResult
from bevcc.reference.tiny_cnn import calibration_batches, tiny_cnn
from tests.conftest import run_bevcc

CUDA = torch.cuda.is_available()
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA (torch.cuda.is_available())")
no_cuda = pytest.mark.skipif(CUDA, reason="checks the answer of a machine without CUDA")

CALIB = "bevcc.reference.tiny_cnn:calibration_batches"
PIPELINE = "fx(bn_fold,qdq_insert,quantizer_unify,sensitivity_disable{top_k=1}),export,onnx(check)"
# Where the GPU rounds calibration statistics differently from the CPU (cuDNN's summation order
# and TF32 convolutions, atomics in spconv's scatter), an amax, and so a scale, moves by at most
# this much, relative; everything else in the file stays byte-identical.
SCALE_RTOL = 1e-2


# ---- the accepted forms ---------------------------------------------------------------------
@pytest.mark.parametrize("text", ["cpu", "cuda", "cuda:0", "cuda:12", "auto"])
def test_accepted_forms_pass_the_check_unchanged(text):
    assert check_device(text) == text


@pytest.mark.parametrize("text", ["gpu", "cuda:x", "CUDA", "cuda:", "cuda0", "", "cpu:0", None, 0])
def test_malformed_devices_are_one_value_error_quoting_the_accepted_forms(text):
    with pytest.raises(ValueError, match="is not one of") as caught:
        check_device(text)
    assert isinstance(caught.value, UsageError) and caught.value.exit_code == 2
    assert str(caught.value) == f"device {text!r} is not one of {ACCEPTED}"


def test_auto_is_cuda_exactly_where_torch_sees_a_gpu():
    assert resolve_device() == resolve_device("auto") == ("cuda" if CUDA else "cpu")
    assert resolve_device("cpu") == "cpu"


@no_cuda
@pytest.mark.parametrize("text", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_one_value_error(text):
    with pytest.raises(DeviceError) as caught:
        resolve_device(text)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"device '{text}': CUDA is not available here (torch ")
    assert message.endswith("; use cpu or auto")


# ---- the API: checked before the model loads ------------------------------------------------
@pytest.fixture
def marked_model(tmp_path):
    """A model callable that leaves a file behind when it is called."""
    marker = tmp_path / "model-was-built"
    source = tmp_path / "marked.py"
    source.write_text(
        "import pathlib\n"
        "from bevcc.reference.tiny_cnn import tiny_cnn\n"
        "def build():\n"
        f"    pathlib.Path({str(marker)!r}).write_text('built')\n"
        "    return tiny_cnn()\n"
    )
    return f"{source}:build", marker


@pytest.mark.parametrize("device", ["gpu", "cuda:x"])
def test_api_malformed_device_fails_before_the_model_loads(marked_model, tmp_path, device):
    model, marker = marked_model
    with pytest.raises(ValueError, match=f"device '{device}' is not one of"):
        bevcc.compile(model, pipeline="fx(bn_fold)", device=device, output=tmp_path / "o.pt")
    assert not marker.exists() and not (tmp_path / "o.pt").exists()


@no_cuda
def test_api_cuda_without_cuda_fails_before_the_model_loads(marked_model, tmp_path):
    model, marker = marked_model
    with pytest.raises(ValueError, match="CUDA is not available here"):
        bevcc.compile(model, pipeline="fx(bn_fold)", device="cuda", output=tmp_path / "o.pt")
    assert not marker.exists() and not (tmp_path / "o.pt").exists()


# ---- the device reaches the passes through their context ------------------------------------
SEEN: list[str] = []


class _SeesDevice(Pass):
    """Records the device its context carries; changes nothing."""

    name, ir, summary = "sees_device", "fx", "records the compile's device"

    def call(self, ir):
        SEEN.append(self.context.device)
        return PassResult(ir, modified=False)


@pytest.mark.parametrize(("given", "want"), [("cpu", "cpu"), (None, "cuda" if CUDA else "cpu")])
def test_the_resolved_device_reaches_a_pass_through_its_context(registry, given, want):
    registry.add_pass(_SeesDevice)
    SEEN.clear()
    bevcc.compile(tiny_cnn(), pipeline="fx(sees_device)", registry=registry, device=given)
    assert [want] == SEEN


def test_calibration_leaves_the_model_and_its_quantizers_on_the_cpu(registry):
    result = bevcc.compile(
        tiny_cnn(),
        pipeline="fx(bn_fold,qdq_insert,quantizer_unify)",
        calib=calibration_batches(),
        registry=registry,
    )
    tensors = [*result.ir.module.parameters(), *result.ir.module.buffers()]
    assert tensors and {t.device.type for t in tensors} == {"cpu"}


# ---- the CLI --------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["compile", "sensitivity", "evaluate"])
@pytest.mark.parametrize("device", ["gpu", "cuda:x"])
def test_cli_malformed_device_is_one_line_exit_2(tmp_path, command, device):
    args = {
        "compile": ["compile", "tiny_cnn", "-o", tmp_path / "out.onnx"],
        "sensitivity": ["sensitivity", "tiny_cnn", "--calib", CALIB, "-o", tmp_path / "s"],
        "evaluate": ["evaluate", tmp_path],
    }[command]
    done = run_bevcc(*args, "--device", device)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"bevcc: error: argument --device: device '{device}' is not one of {ACCEPTED} "
        f"(see `bevcc {command} --help`)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@no_cuda
@pytest.mark.parametrize("command", ["compile", "sensitivity", "evaluate", "set"])
def test_cli_cuda_without_cuda_is_one_line_exit_2_and_writes_nothing(tmp_path, command):
    config = tmp_path / "set.toml"
    config.write_text(
        '[[files]]\nname = "a"\ninput = "tiny_cnn"\npipeline = "fx(bn_fold),export"\n'
        'precision = "fp32"\n'
    )
    args = {
        "compile": ["compile", "tiny_cnn", "-o", tmp_path / "out.onnx"],
        "sensitivity": ["sensitivity", "tiny_cnn", "--calib", CALIB, "-o", tmp_path / "s"],
        "evaluate": ["evaluate", tmp_path],
        "set": ["compile", "--config", config, "-o", tmp_path / "set"],
    }[command]
    if command == "evaluate":  # a set directory whose config names a module never imported
        (tmp_path / "report.json").write_text(
            f'{{"schema": "bevcc-set-report/1", "config": "{config}"}}'
        )
        config.write_text('evaluate = "no_such_module:evaluate"\n' + config.read_text())
    before = sorted(p.name for p in tmp_path.iterdir())
    done = run_bevcc(*args, "--device", "cuda")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("bevcc: error: device 'cuda': CUDA is not available here")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _set_directory(tmp_path, function_source: str):
    """A set directory whose config's `evaluate` is `function_source`'s `evaluate`."""
    (tmp_path / "ev.py").write_text(
        "from bevcc.deploy.evaluation import Evaluation\n" + function_source
    )
    config = tmp_path / "set.toml"
    config.write_text(
        f'evaluate = "{tmp_path / "ev.py"}:evaluate"\n[[files]]\nname = "a"\n'
        'input = "tiny_cnn"\npipeline = "fx(bn_fold),export"\nprecision = "fp32"\n'
    )
    out = tmp_path / "set"
    out.mkdir()
    (out / "report.json").write_text(f'{{"schema": "bevcc-set-report/1", "config": "{config}"}}')
    return out


@pytest.mark.parametrize("given", [[], ["--device", "cpu"]])
def test_evaluate_hands_the_resolved_device_to_a_function_that_takes_it(tmp_path, given):
    out = _set_directory(
        tmp_path,
        "def evaluate(directory, config, scenes, stream, device):\n"
        "    print('device', device, file=stream)\n"
        "    return Evaluation('m', scenes, [], [])\n",
    )
    done = run_bevcc("evaluate", out, "--scenes", "1", *given)
    assert done.returncode == 0, done.stderr
    assert f"device {'cuda' if CUDA and not given else 'cpu'}\n" in done.stderr


def test_evaluate_without_a_device_parameter_still_runs_on_the_default(tmp_path):
    out = _set_directory(
        tmp_path,
        "def evaluate(directory, config, scenes, stream):\n"
        "    return Evaluation('m', scenes, [], [])\n",
    )
    for given in ([], ["--device", "cpu"], ["--device", "auto"]):
        done = run_bevcc("evaluate", out, "--scenes", "1", *given)
        assert done.returncode == 0, done.stderr


def test_cli_device_cpu_writes_the_defaults_bytes_here(tmp_path):
    """On this machine (the CPU everywhere CI runs) --device cpu is the default's file, byte for
    byte; on a GPU machine the default is cuda, and the GPU tests below compare the two."""
    if CUDA:
        pytest.skip("the default is cuda here; test_gpu_* compare cuda with cpu")
    files = {}
    for name, extra in (("default", []), ("cpu", ["--device", "cpu"])):
        out = tmp_path / name
        out.mkdir()
        done = run_bevcc(
            "compile", "tiny_cnn", "--calib", CALIB, "--pipeline", PIPELINE,
            "-o", out / "m.onnx", *extra,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        files[name] = (out / "m.onnx").read_bytes()
    assert files["default"] == files["cpu"]


def test_config_device_key_is_checked_and_used(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('input = "tiny_cnn"\npipeline = "fx(bn_fold),export"\ndevice = "gpu"\n')
    done = run_bevcc("compile", "--config", config, "-o", tmp_path / "o.onnx")
    assert done.returncode == 2
    assert done.stderr == (
        f"bevcc: error: config {config}: device 'gpu' is not one of {ACCEPTED}\n"
    )
    config.write_text('input = "tiny_cnn"\npipeline = "fx(bn_fold),export"\ndevice = "cpu"\n')
    done = run_bevcc("compile", "--config", config, "-o", tmp_path / "o.onnx")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o.onnx").is_file()


# ---- on a GPU: the same files whichever device calibrated them ------------------------------
def _compile_both(model_builder, pipeline, calib, tmp_path, registry, **kwargs):
    files, modules = {}, {}
    for device in ("cpu", "cuda"):
        path = tmp_path / f"{device}.onnx"
        result = bevcc.compile(
            model_builder(),
            pipeline=pipeline,
            calib=calib,
            output=path,
            registry=registry,
            device=device,
            artifacts_dir=tmp_path / device,
            **kwargs,
        )
        files[device], modules[device] = path, result
    return files, modules


def _assert_same_file_but_scales(cpu_path, cuda_path, is_scale):
    """Same graph; initializers byte-equal except scales (within SCALE_RTOL); node attributes
    equal except the ranges `is_scale` names (within SCALE_RTOL)."""
    cpu, cuda = onnx.load(cpu_path), onnx.load(cuda_path)
    assert [(n.op_type, list(n.input), list(n.output)) for n in cpu.graph.node] == [
        (n.op_type, list(n.input), list(n.output)) for n in cuda.graph.node
    ]
    inits = {t.name: numpy_helper.to_array(t) for t in cuda.graph.initializer}
    differing = 0
    for tensor in cpu.graph.initializer:
        want, got = numpy_helper.to_array(tensor), inits[tensor.name]
        if is_scale(tensor.name):
            np.testing.assert_allclose(got, want, rtol=SCALE_RTOL, err_msg=tensor.name)
            differing += not np.array_equal(got, want)
        else:
            assert got.tobytes() == want.tobytes(), tensor.name
    for a, b in zip(cpu.graph.node, cuda.graph.node, strict=True):
        for x, y in zip(a.attribute, b.attribute, strict=True):
            if is_scale(x.name):
                np.testing.assert_allclose(
                    onnx.helper.get_attribute_value(y),
                    onnx.helper.get_attribute_value(x),
                    rtol=SCALE_RTOL,
                )
            else:
                assert x == y, (a.name, x.name)
    return differing


class _OneConv(torch.nn.Module):
    """Its only activation quantizer reads the graph input, whose |max| is the same number on
    either device: the file must be the same bytes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x)


@gpu
@needs_cuda
def test_gpu_files_are_byte_identical_when_the_statistics_agree(tmp_path, registry):
    example = (torch.randn(1, 3, 16, 16),)
    calib = [{"x": np.random.default_rng(i).standard_normal((4, 3, 16, 16), np.float32)}
             for i in range(4)]  # fmt: skip
    files, _ = _compile_both(
        lambda: (_OneConv().eval(), example), "fx(qdq_insert),export", calib, tmp_path, registry
    )
    assert files["cpu"].read_bytes() == files["cuda"].read_bytes()
    fake_quant = bevcc.compile(
        _OneConv().eval(), pipeline="fx(qdq_insert)", calib=calib, example_inputs=example,
        registry=registry, device="cuda",
    ).ir.module  # fmt: skip
    tensors = [*fake_quant.parameters(), *fake_quant.buffers()]
    assert {t.device.type for t in tensors} == {"cpu"}  # back on the CPU after the compile


@gpu
@needs_cuda
def test_gpu_example_model_file_matches_the_cpu_one_within_the_scale_tolerance(tmp_path, registry):
    pipeline = "fx(bn_fold,qdq_insert,quantizer_unify),export,onnx(strong_typing,check)"
    files, _ = _compile_both(tiny_cnn, pipeline, calibration_batches(), tmp_path, registry)
    _assert_same_file_but_scales(files["cpu"], files["cuda"], lambda name: "scale" in name)


@gpu
@needs_cuda
def test_gpu_spconv_model_file_matches_the_cpu_one_and_folds_the_bias_inside(tmp_path, registry):
    pytest.importorskip("spconv")
    from bevcc.reference.tiny_sparse import random_voxels
    from bevcc.reference.tiny_sparse import tiny_sparse as build
    from bevcc.sparse.conv_bias import SparseConvBias

    calib = [
        dict(zip(["voxel_features", "coors"], [t.numpy() for t in random_voxels(s)], strict=True))
        for s in range(1, 5)
    ]
    files, _ = _compile_both(
        build, "fx(bn_fold,sparse_conv_quant,quantizer_unify),export_libspconv", calib, tmp_path,
        registry,
    )  # fmt: skip
    _assert_same_file_but_scales(
        files["cpu"], files["cuda"], lambda name: name.endswith("dynamic_range")
    )
    folded = {}
    for device in ("cpu", "cuda"):
        ir = bevcc.compile(build(), pipeline="fx(bn_fold)", registry=registry, device=device).ir
        folded[device] = sum(isinstance(m, SparseConvBias) for m in ir.module.modules())
    assert folded["cuda"] == 0 < folded["cpu"]  # sparse_bias=auto: inside on CUDA


@gpu
@needs_cuda
def test_gpu_sensitivity_ranks_like_the_cpu(tmp_path, registry):
    reports = {}
    for device in ("cpu", "cuda"):
        (tmp_path / device).mkdir()
        bevcc.compile(
            tiny_cnn(),
            pipeline="fx(bn_fold,qdq_insert,quantizer_unify,sensitivity_disable{top_k=2})",
            calib=calibration_batches(),
            registry=registry,
            artifacts_dir=tmp_path / device,
            device=device,
        )
        reports[device] = json.loads((tmp_path / device / "disable_list.json").read_text())
    assert len(reports["cpu"]["disable"]) == 2
    assert reports["cuda"]["disable"] == reports["cpu"]["disable"]


@gpu
@needs_cuda
def test_gpu_qat_step_trains_a_sparse_model_on_cuda(registry):
    pytest.importorskip("spconv")
    from bevcc.quant.quantizer import TensorQuantizer
    from bevcc.reference.tiny_sparse import random_voxels, tiny_sparse

    calib = [
        dict(zip(["voxel_features", "coors"], [t.numpy() for t in random_voxels(s)], strict=True))
        for s in range(1, 5)
    ]
    result = bevcc.compile(
        tiny_sparse(),
        pipeline="fx(bn_fold,sparse_conv_quant,quantizer_unify)",
        calib=calib,
        registry=registry,
        device="cuda",
    )
    module = result.ir.module
    for q in module.modules():
        if isinstance(q, TensorQuantizer) and q.amax is not None:
            q.learn_amax()
    module.cuda().train()
    features, coors = (t.cuda() for t in random_voxels(7))
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3)
    loss = module(features, coors).square().mean()
    loss.backward()  # spconv's backward is CUDA-only
    grads = [p.grad for p in module.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    optimizer.step()


@gpu
@needs_cuda
def test_gpu_qat_example_runs_on_cuda(tmp_path, registry):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "qat_digits.py"
    spec = importlib.util.spec_from_file_location("qat_digits", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(steps=20, out=tmp_path, registry=registry, device="cuda")
    # fine-tuned on the GPU, measured and exported on the CPU: the file is the model
    assert results["qat deployed file"] == results["qat"]
    assert results["qat"] >= results["float"] - 0.005
