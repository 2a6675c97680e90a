"""Fuzzing the whole pipeline with hypothesis: random conv/deconv/linear/BN/Add/Concat/pool
graphs. bn_fold keeps float numerics, lint is clean after quantizer_unify, and onnxruntime runs
the exported file like the fake-quant model."""

import copy

import numpy as np
import onnx
import onnxruntime as ort
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import bevcc
from bevcc.lint.checks import lint_model
from bevcc.plugins import load_plugins
from bevcc.pm.instrument import Instrumentation
from bevcc.quant.quantizer import TensorQuantizer
from bevcc.reference.seeding import randomize_batchnorm

KINDS = ("conv", "deconv", "residual", "concat", "pool")


class Random(nn.Module):
    """A chain of blocks drawn by hypothesis; every block keeps [N, C, 8, 8]."""

    def __init__(self, channels: int, blocks: list[tuple[str, int, bool, bool]], head: bool):
        super().__init__()
        self.kinds = [kind for kind, *_ in blocks]
        self.relus = [relu for *_, relu in blocks]
        self.layers = nn.ModuleList()
        c = channels
        for kind, kernel, bn, _ in blocks:
            if kind == "deconv":
                layer = nn.Sequential(nn.ConvTranspose2d(c, c, 2, stride=2), nn.MaxPool2d(2))
            elif kind == "pool":
                layer = nn.MaxPool2d(3, stride=1, padding=1)
            elif kind == "concat":
                layer = nn.ModuleList(
                    [nn.Conv2d(c, c, kernel, padding=kernel // 2), nn.Conv2d(2 * c, c, 1)]
                )
            else:
                layer = nn.Conv2d(
                    c,
                    c,
                    kernel,
                    padding=kernel // 2,
                    groups=c if kernel == 3 and kind == "conv" and c % 2 else 1,
                )
            self.layers.append(
                nn.ModuleDict({"op": layer, **({"bn": nn.BatchNorm2d(c)} if bn else {})})
            )
        self.head = nn.Linear(c * 64, 5) if head else None

    def forward(self, x):
        for kind, relu, block in zip(self.kinds, self.relus, self.layers, strict=True):
            op = block["op"]
            if kind == "residual":
                y = x + op(x)
            elif kind == "concat":
                y = op[1](torch.cat([x, op[0](x)], 1))
            else:
                y = op(x)
            if "bn" in block:
                y = block["bn"](y)
            x = torch.relu(y) if relu else y
        return self.head(torch.flatten(x, 1)) if self.head is not None else x


class Keep(Instrumentation):
    """Keeps a copy of the fx module as each named step leaves it (later passes change it in
    place), so one compile serves every check."""

    def __init__(self, *labels: str):
        self.labels, self.modules = labels, {}

    def after_pass(self, step, ir, result) -> None:
        if step.label in self.labels:
            self.modules[step.label] = copy.deepcopy(ir.module)


blocks = st.lists(
    st.tuples(st.sampled_from(KINDS), st.sampled_from([1, 3]), st.booleans(), st.booleans()),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(channels=st.integers(2, 6), spec=blocks, head=st.booleans(), seed=st.integers(0, 2**16))
def test_random_graphs_through_the_whole_pipeline(tmp_path_factory, channels, spec, head, seed):
    registry = load_plugins(autoload=False).registry
    torch.manual_seed(seed)
    model = Random(channels, spec, head).eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 1)
    example = (torch.randn(1, channels, 8, 8, generator=g),)
    calib = [{"x": torch.randn(2, channels, 8, 8, generator=g).numpy()} for _ in range(3)]

    # one compile; the fx module is kept as bn_fold and quantizer_unify left it
    out = tmp_path_factory.mktemp("fuzz") / "q.onnx"
    kept = Keep("fx(bn_fold)", "fx(quantizer_unify)")
    result = bevcc.compile(
        (model, example),
        calib=calib,
        output=out,
        registry=registry,
        pipeline="fx(bn_fold,qdq_insert,quantizer_unify),export{dynamic_batch=true},onnx(check)",
        instrumentations=[kept],
    )
    folded, fake_quant = kept.modules["fx(bn_fold)"], kept.modules["fx(quantizer_unify)"]
    with torch.no_grad():
        torch.testing.assert_close(folded(*example), model(*example), rtol=1e-4, atol=1e-5)

    report = lint_model(onnx.load(out))
    assert (report.reformats, report.problems) == (0, []), report.to_json()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got = ort.InferenceSession(str(out), options).run(None, {"x": calib[0]["x"]})[0]
    with torch.no_grad():
        want = fake_quant(torch.from_numpy(calib[0]["x"])).numpy()
    steps = [
        float(q.amax) / 127
        for q in fake_quant.modules()
        if isinstance(q, TensorQuantizer) and q.axis is None and q.amax is not None
    ]
    np.testing.assert_allclose(got, want, rtol=0, atol=max(steps, default=1e-6))
    assert result.records[-1].name == "onnx(check)"
