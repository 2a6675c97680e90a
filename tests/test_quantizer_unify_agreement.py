"""quantizer_unify decides the same scale domains on FX and on ONNX: one tiny model, compiled as
a PyTorch model (FX passes, then export) and as its float ONNX export (ONNX passes), gives files
whose activation Q/DQ fall into the same scale groups. The case: an Add with no layer to fuse
into (two ReLU outputs), under add=residual: TensorRT runs it as an INT8 elementwise layer, so
both inputs are quantized with one scale (docs/tensorrt_qdq.md)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import bevcc
from bevcc.lint.checks import lint_model
from bevcc.trt.domains import QdqGraph


class ReluAdd(nn.Module):
    """relu(a(x)) + relu(b(x)) into a head conv: the Add's inputs come from ReLUs, not from
    layers. Each ReLU output also feeds a conv of its own, so qdq_insert gives it a scale (the
    ONNX pass has no calibration: it places Q/DQ only where a domain's scale is known)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)
        self.c, self.d = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 2, 1)
        with torch.no_grad():
            self.b.weight.mul_(4.0)  # the two Add inputs get clearly different ranges

    def forward(self, x):
        a, b = torch.relu(self.a(x)), torch.relu(self.b(x))
        return self.head(a + b), self.c(a), self.d(b)


def scale_groups(model: onnx.ModelProto) -> list[list[tuple]]:
    """Activation quantizers grouped by scale value, each named by what it reads and where its
    DQ goes: (producer op of the quantized tensor, ((consumer op, input index), ...))."""
    view = QdqGraph(model)
    groups: dict[float, list[tuple]] = {}
    for node in view.nodes:
        if node.op_type != "QuantizeLinear" or not view.is_activation_qdq(node):
            continue
        producer = view.producer.get(node.input[0])
        dq = view.consumers[node.output[0]][0].output[0]
        uses = tuple(sorted((c.op_type, list(c.input).index(dq)) for c in view.consumers[dq]))
        scale = float(np.asarray(view.scale(node)).reshape(()))
        groups.setdefault(scale, []).append((producer.op_type if producer else "input", uses))
    return sorted(sorted(members) for members in groups.values())


@pytest.fixture
def model_and_data(tmp_path):
    torch.manual_seed(0)
    model = ReluAdd().eval()
    x = torch.randn(1, 3, 8, 8)
    path = tmp_path / "float.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y", "c", "d"],
        )
    batches = [
        {"x": np.random.default_rng(i).standard_normal((1, 3, 8, 8), np.float32)} for i in range(2)
    ]
    return model, x, path, batches


def test_both_irs_give_an_unfused_add_one_scale_for_both_inputs(model_and_data, registry):
    model, x, path, batches = model_and_data
    options = "quantizer_unify{add=residual}"
    fx = bevcc.compile(
        (model, (x,)),
        pipeline=f"fx(qdq_insert,{options}),export",
        calib=batches,
        registry=registry,
    ).ir.to_model()
    on_onnx = bevcc.compile(
        path, pipeline=f"onnx(qdq_insert,{options})", calib=batches, registry=registry
    ).ir.to_model()
    expected = [
        [("Add", (("Conv", 0),))],  # the sum, read by the head
        # both Add inputs, each also read by its conv: one scale
        [("Relu", (("Add", 0), ("Conv", 0))), ("Relu", (("Add", 1), ("Conv", 0)))],
        [("input", (("Conv", 0), ("Conv", 0)))],  # x, read by both branch convs
    ]
    assert sorted(scale_groups(fx)) == sorted(scale_groups(on_onnx)) == sorted(expected)
    for file in (fx, on_onnx):
        report = lint_model(file)
        assert (report.mismatches, report.problems) == ([], [])
