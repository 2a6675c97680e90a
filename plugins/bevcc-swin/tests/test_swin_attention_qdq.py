"""attention_qdq: exact Q/DQ placement and scales, counted from the architecture."""

import numpy as np
import pytest
import torch
from bevcc_swin.model import SwinBackbone, SwinConfig

import bevcc
from bevcc.lint.checks import lint_model

SOFTMAX_SCALE = np.float32(1) / np.float32(127)


def expected_pairs(config: SwinConfig, plugin: bool) -> int:
    """Q/DQ pairs of the exported file, from the architecture alone.

    Per block: qkv, proj, fc1, fc2 (input + weight each: 8), Q.K^T (q, k^T: 2), attn.V
    (probabilities, v: 2), the attention residual Add (both inputs: 2, or 1 when the shortcut
    comes straight from a Linear, i.e. the merge's reduction, which quantizer_unify's residual
    rule treats as fused into the Add), the MLP residual Add (identity only, fc2 fuses: 1).
    Plus the patch-embedding conv
    (2) and each merge's reduction Linear (2). The core also quantizes both inputs of the
    relative-position-bias Add (2 per block) and of the shift-mask Add (2 per shifted block).
    """
    blocks = sum(config.depths)
    merges = len(config.depths) - 1
    shifted = sum(depth // 2 for depth in config.depths)
    pairs = 2 + 2 * merges + blocks * (8 + 2 + 2 + 2 + 1) - merges
    return pairs if plugin else pairs + 2 * blocks + 2 * shifted


def producers_and_initializers(model):
    producer = {o: n for n in model.graph.node for o in n.output}
    return producer, {t.name: t for t in model.graph.initializer}


def scale_of(node, inits, producer):
    from onnx import numpy_helper

    name = node.input[1]
    if name in inits:
        return numpy_helper.to_array(inits[name])
    return numpy_helper.to_array(producer[name].attribute[0].t)


@pytest.mark.parametrize("name", ["core", "plugin"])
def test_qdq_pair_count_is_the_architectures(compiled, name):
    _, model, _ = compiled[name]
    pairs = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert pairs == expected_pairs(SwinConfig(), plugin=name == "plugin")
    assert (pairs, name) in ((63, "plugin"), (75, "core"))


def test_pass_stats_and_report(compiled):
    result, _, _ = compiled["plugin"]
    record = result.records[-1]
    assert record.name == "fx(attention_qdq)" and record.modified
    # 4 blocks x bias Add (2) + 2 shifted blocks x mask Add (2) = 12 score quantizers.
    assert record.stats == {"attention": 4, "score_quantizers": 12, "softmax_fixed": 4}


def test_softmax_output_scale_is_exactly_one_over_127(compiled):
    _, model, _ = compiled["plugin"]
    producer, inits = producers_and_initializers(model)
    softmax_q = [
        n
        for n in model.graph.node
        if n.op_type == "QuantizeLinear"
        and producer.get(n.input[0]) is not None
        and producer[n.input[0]].op_type == "Softmax"
    ]
    assert len(softmax_q) == 4
    for node in softmax_q:
        scale = scale_of(node, inits, producer)
        assert scale.dtype == np.float32 and scale == SOFTMAX_SCALE
        assert scale == np.float32(1 / 127)


def test_core_calibrates_the_softmax_output_below_one(compiled):
    """What the pass fixes: max calibration gives the largest probability seen (clips above)."""
    result, _, _ = compiled["core"]
    amaxes = [
        float(m.amax)
        for n, m in result.ir.module.named_modules()
        if n.startswith("matmul_")
        and n.endswith("input0_quantizer")
        and n.split("_")[1] in ("1", "3", "5", "7")
    ]
    assert len(amaxes) == 4 and all(0.5 < a < 1.0 for a in amaxes)


def _score_path_qdq(model):
    """DQ nodes between each attention MatMul and its Softmax (walking back through Add/Reshape)."""
    producer, _ = producers_and_initializers(model)
    found = []
    for softmax in (n for n in model.graph.node if n.op_type == "Softmax"):
        stack = [softmax.input[0]]
        while stack:
            node = producer.get(stack.pop())
            if node is None or node.op_type == "MatMul":
                continue
            if node.op_type == "DequantizeLinear":
                found.append(node.name)
            if node.op_type in (
                "Add",
                "Reshape",
                "Unsqueeze",
                "DequantizeLinear",
                "QuantizeLinear",
            ):
                stack.extend(
                    i for i in node.input[: 1 if "Quant" in node.op_type else None] if i in producer
                )
    return found


def test_scores_stay_float_only_with_the_plugin(compiled):
    assert len(_score_path_qdq(compiled["core"][1])) == 12
    assert _score_path_qdq(compiled["plugin"][1]) == []


def test_shared_scales_survive_the_pass(compiled):
    """k and v leave the qkv Linear through Reshape/Transpose/Gather: one scale domain (core's
    rule), and the attention residual Add reads both inputs with one scale."""
    _, model, _ = compiled["plugin"]
    producer, inits = producers_and_initializers(model)
    matmuls = [
        n
        for n in model.graph.node
        if n.op_type == "MatMul"
        and all(
            producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
            for i in n.input
        )
        and not any(producer[i].input[0] in inits for i in n.input)
    ]
    assert len(matmuls) == 8  # 2 per block: activation x activation
    second = [scale_of(producer[m.input[1]], inits, producer) for m in matmuls]
    for k_scale, v_scale in zip(second[0::2], second[1::2], strict=True):
        assert k_scale == v_scale
    adds = [
        n
        for n in model.graph.node
        if n.op_type == "Add"
        and all(
            producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
            for i in n.input
        )
    ]
    assert len(adds) == 3  # attention residuals whose shortcut is not a Linear output
    for add in adds:
        a, b = (scale_of(producer[i], inits, producer) for i in add.input)
        assert a == b


@pytest.mark.parametrize("name", ["core", "plugin"])
def test_both_files_pass_core_lint(compiled, name):
    """Core lint has no attention rule: it passes both (mha_check is what tells them apart)."""
    _, model, path = compiled[name]
    report = lint_model(model, str(path))
    assert report.errors == 0 and report.reformats == 0
    assert report.int8_macs == report.total_macs


def test_second_run_changes_nothing(compiled, registry):
    result, _, _ = compiled["plugin"]
    again = bevcc.compile(result.ir, pipeline="fx(attention_qdq)", registry=registry)
    assert not again.records[0].modified
    assert again.records[0].stats == {"attention": 4, "score_quantizers": 0, "softmax_fixed": 0}


def test_matmuls_kept_float_by_the_quant_config_stay_float(registry):
    torch.manual_seed(0)
    model = SwinBackbone(SwinConfig(depths=(2,), heads=(2,))).eval()
    image = torch.randn(1, 3, 56, 56)
    batches = [{"x": torch.randn(1, 3, 56, 56).numpy()} for _ in range(2)]
    result = bevcc.compile(
        (model, (image,)),
        calib=batches,
        registry=registry,
        pipeline="fx(qdq_insert,quantizer_unify,attention_qdq)",
        # Functional matmuls are named by their node (matmul, matmul_1, ...).
        # (`[ops.matmul] enabled = false` would be the natural spelling, but
        # qdq_insert's FX path drops `enabled` from per-op settings.)
        quant_config={"overrides": [{"match": "matmul*", "enabled": False}]},
    )
    assert result.records[-1].stats["attention"] == 0
    assert not result.records[-1].modified


def test_golden_graph_of_one_stage(golden, registry):
    """One stage (a plain and a shifted block) on a 56x56 image, after the plugin pipeline."""
    torch.manual_seed(0)
    model = SwinBackbone(SwinConfig(depths=(2,), heads=(2,))).eval()
    image = torch.randn(1, 3, 56, 56)
    batches = [{"x": torch.randn(1, 3, 56, 56).numpy()} for _ in range(2)]
    result = bevcc.compile(
        (model, (image,)),
        registry=registry,
        calib=batches,
        pipeline="fx(qdq_insert,quantizer_unify,attention_qdq)",
    )
    golden("swin_one_stage_attention_qdq", result.ir)


def test_a_softmax_quantizer_shared_with_another_tensor_is_split_not_rescaled(registry):
    """If an earlier pass made the probabilities share a quantizer with another tensor, the
    fixed amax must not change that tensor's scale: the softmax edge gets its own quantizer."""
    torch.manual_seed(0)
    model = SwinBackbone(SwinConfig(depths=(2,), heads=(2,))).eval()
    image = torch.randn(1, 3, 56, 56)
    batches = [{"x": torch.randn(1, 3, 56, 56).numpy()} for _ in range(2)]
    result = bevcc.compile(
        (model, (image,)),
        registry=registry,
        calib=batches,
        pipeline="fx(qdq_insert,quantizer_unify)",
    )
    graph = result.ir.graph
    probs = next(
        n
        for n in graph.nodes
        if n.op == "call_module" and n.args and getattr(n.args[0], "target", None) == "softmax"
    )
    other = "stages.0.0.attn.proj.input_quantizer"
    probs.target = other  # share, as a unify pass could
    result.ir.module.recompile()
    shared_amax = float(result.ir.module.get_submodule(other).amax)
    again = bevcc.compile(result.ir, pipeline="fx(attention_qdq)", registry=registry)
    module = again.ir.module
    assert float(module.get_submodule(other).amax) == shared_amax
    assert probs.target == f"{probs.name}_softmax"
    assert float(module.get_submodule(probs.target).amax) == 1.0
