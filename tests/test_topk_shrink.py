"""onnx(topk_shrink): a head's `argsort(descending)[..., :k]` over classes x H x W, captured as
ONNX, is a TopK beyond TensorRT's K limit; the pass makes it a TopK of k, same outputs."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import bevcc
from bevcc.ir.onnx_capture import capture_onnx
from bevcc.lint.checks import lint_model
from bevcc.plugins import load_plugins

PROPOSALS = 200


class Proposals(nn.Module):
    """TransFusionHead's query selection, in small: top proposals among all classes."""

    def __init__(self, sort_values: bool = False):
        super().__init__()
        self.heatmap = nn.Conv2d(8, 10, 1)
        self.sort_values = sort_values

    def forward(self, bev):
        heat = self.heatmap(bev).sigmoid().flatten(1)  # [1, 10 * H * W]
        if self.sort_values:  # the whole sort is used: nothing to shrink
            return heat.sort(dim=-1, descending=True).values
        top = heat.argsort(dim=-1, descending=True)[..., :PROPOSALS]
        return top // bev.shape[-1] ** 2, heat.gather(1, top)


@pytest.fixture(scope="module")
def registry():
    return load_plugins(autoload=False).registry


def _run(model: onnx.ModelProto, bev: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"bev": bev})


def _topk_counts(model: onnx.ModelProto) -> list[int]:
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return [int(constants[n.input[1]][0]) for n in model.graph.node if n.op_type == "TopK"]


def test_the_head_topk_shrinks_to_its_proposals_with_the_same_outputs(registry):
    torch.manual_seed(0)
    bev = torch.randn(1, 8, 24, 24)  # K = 10 x 24 x 24 = 5760 > 3840
    captured = capture_onnx(Proposals().eval(), (bev,)).to_model()
    assert _topk_counts(captured) == [5760]
    assert any("exceeds TensorRT's limit k <= 3840" in w for w in lint_model(captured).warnings)
    result = bevcc.compile(captured, pipeline="onnx(topk_shrink,check)", registry=registry)
    shrunk = result.ir.to_model()
    assert _topk_counts(shrunk) == [PROPOSALS]
    assert [n.op_type for n in shrunk.graph.node].count("Slice") == 0
    assert not any("TopK" in w for w in lint_model(shrunk).warnings)
    assert [o.name for o in shrunk.graph.output] == [o.name for o in captured.graph.output]
    for seed in range(3):
        x = np.random.RandomState(seed).randn(1, 8, 24, 24).astype(np.float32)
        for before, after in zip(_run(captured, x), _run(shrunk, x), strict=True):
            np.testing.assert_array_equal(before, after)


def test_a_sort_read_whole_is_left_alone(registry):
    bev = torch.randn(1, 8, 24, 24)
    captured = capture_onnx(Proposals(sort_values=True).eval(), (bev,)).to_model()
    result = bevcc.compile(captured, pipeline="onnx(topk_shrink)", registry=registry)
    assert _topk_counts(result.ir.to_model()) == _topk_counts(captured) == [5760]
    assert not result.records[0].modified
