"""Models symbolic tracing cannot take: captured as ONNX when the pipeline starts on onnx(...), and
shape values that Python unpacks (`*d.shape[2:]`) traced in FX from the example's lengths."""

from __future__ import annotations

import importlib.util
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import bevcc
from bevcc.errors import InputError
from bevcc.ir.fx import CAPTURE_ONNX_HINT
from bevcc.ir.onnx_capture import capture_onnx
from bevcc.ir.specialize import specialize
from bevcc.plugins import load_plugins
from bevcc.testing import NO_PLUGINS
from tests.conftest import run_bevcc

# A head in the style of mmdet3d's TransFusionHead: item assignment into a tensor (FX: "'Proxy'
# object does not support item assignment"), a dict of inputs, a dict of outputs, an attribute
# set in forward.
HEAD = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = nn.Conv2d(8, 8, 3, padding=1)
            self.heatmap = nn.Conv2d(8, 3, 1)

        def forward(self, feats, metas):
            x = F.relu(self.shared(feats["bev"] * metas["scale"]))
            heat = self.heatmap(x).sigmoid()
            local_max = torch.zeros_like(heat)
            local_max[:, :, 1:-1, 1:-1] = F.max_pool2d(heat, 3, stride=1, padding=0)
            self.last_peaks = local_max  # state mmdet's heads keep between calls
            return {"heatmap": heat * (heat == local_max), "features": x + feats["extra"]}

    def build():
        torch.manual_seed(0)
        feats = {"bev": torch.randn(1, 8, 12, 12), "extra": torch.randn(1, 8, 12, 12)}
        return Head().eval(), (feats, {"scale": 0.5})

    def calib():
        g = torch.Generator().manual_seed(1)
        return [
            {"bev": torch.randn(1, 8, 12, 12, generator=g).numpy(),
             "extra": torch.randn(1, 8, 12, 12, generator=g).numpy()}
            for _ in range(3)
        ]
    """
)


@pytest.fixture
def head_file(tmp_path):
    (tmp_path / "head.py").write_text(HEAD)
    return tmp_path


def _load(path):
    spec = importlib.util.spec_from_file_location("capture_head", path / "head.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return vars(module)


def test_fx_cannot_trace_the_head_and_its_error_names_the_onnx_capture(head_file):
    proc = run_bevcc("compile", "head.py:build", "-o", "out.onnx", cwd=head_file,
                     env_extra=NO_PLUGINS)  # fmt: skip
    assert proc.returncode == 1 and not (head_file / "out.onnx").exists()
    assert "does not support item assignment" in proc.stderr
    assert proc.stderr.strip().endswith(CAPTURE_ONNX_HINT)
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_pipeline_on_onnx_captures_the_head_and_quantizes_it(head_file):
    proc = run_bevcc(
        "compile", "head.py:build", "--calib", "head.py:calib",
        "--pipeline", "onnx(qdq_insert,quantizer_unify,check)", "-o", "out.onnx",
        cwd=head_file, env_extra=NO_PLUGINS,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "quantized 2 layers (Conv 2), 4 quantizers" in proc.stderr
    model = onnx.load(head_file / "out.onnx")
    # inputs named by the dict keys, the non-tensor `metas` a constant; outputs by their keys
    assert [i.name for i in model.graph.input] == ["bev", "extra"]
    assert [o.name for o in model.graph.output] == ["heatmap", "features"]
    ops = [n.op_type for n in model.graph.node]
    # two weights, the conv input, the shared domain of the Add (relu and extra): 5 pairs
    assert ops.count("QuantizeLinear") == 5 and ops.count("DequantizeLinear") == 5
    assert {n.name for n in model.graph.node if n.op_type == "Conv"} == {
        "shared/conv2d",
        "heatmap/conv2d_1",
    }
    lint = run_bevcc("lint", "out.onnx", cwd=head_file, env_extra=NO_PLUGINS)
    assert lint.returncode == 0, lint.stdout


def test_the_capture_computes_what_the_model_computes_and_leaves_it_untouched(head_file):
    namespace = _load(head_file)
    module, inputs = namespace["build"]()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    ir = capture_onnx(module, inputs)
    assert not hasattr(module, "last_peaks")  # forward's state went to the capture's copy
    assert "torch.export" in ir.source
    session = ort.InferenceSession(
        ir.to_model().SerializeToString(), providers=["CPUExecutionProvider"]
    )
    feed = {k: v.numpy() for k, v in inputs[0].items()}
    heatmap, features = session.run(["heatmap", "features"], feed)
    with torch.no_grad():
        expected = module(*inputs)
    np.testing.assert_allclose(heatmap, expected["heatmap"].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(features, expected["features"].numpy(), rtol=0, atol=1e-5)
    module_after = module.state_dict()
    assert all(torch.equal(before[k], module_after[k]) for k in before)


def test_the_capture_does_not_set_state_on_the_callers_module():
    class Stateful(nn.Module):
        def forward(self, x):
            self.seen = x.shape[0]
            return x * 2

    module = Stateful()
    capture_onnx(module, (torch.randn(2, 3),))
    assert not hasattr(module, "seen")


def test_data_dependent_control_flow_falls_back_to_the_torchscript_exporter():
    class Gate(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # torch.export cannot decide this; the example can
                return x * 2
            return x - 1

    x = torch.ones(2, 3)
    ir = capture_onnx(Gate(), (x,))
    assert "TorchScript" in ir.source
    session = ort.InferenceSession(
        ir.to_model().SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (out,) = session.run(None, {"x": x.numpy()})
    np.testing.assert_array_equal(out, (x * 2).numpy())


def test_capture_errors_are_one_line():
    class Broken(nn.Module):
        def forward(self, x):
            return x @ torch.ones(5, 5)  # wrong inner size for the example

    with pytest.raises(InputError, match=r"^cannot capture Broken to ONNX: its forward failed"):
        capture_onnx(Broken(), (torch.randn(2, 3),))
    registry = load_plugins(autoload=False).registry
    with pytest.raises(InputError, match="without example inputs"):
        bevcc.compile(nn.Conv2d(1, 1, 1), pipeline="onnx(check)", registry=registry)


def test_a_python_unpacked_shape_traces_in_fx_from_the_example():
    class CamFeats(nn.Module):  # mmdet3d's DepthLSSTransform.get_cam_feats, in small
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 1)

        def forward(self, x, d):
            B, N = x.shape[:2]
            d = d.view(B * N, *d.shape[2:])
            return self.conv(d).view(B, N, 4, *d.shape[2:]) + x.mean()

    module = CamFeats().eval()
    inputs = (torch.randn(1, 2, 3, 4, 5), torch.randn(1, 2, 1, 4, 5))
    result = specialize(module, inputs)
    views = [n for n in result.module.graph.nodes if n.target == "view"]
    assert [v.args[1:] for v in views] == [(2, 1, 4, 5), (1, 2, 4, 4, 5)]
    with torch.no_grad():
        torch.testing.assert_close(result.module(*inputs), module(*inputs), rtol=0, atol=0)
