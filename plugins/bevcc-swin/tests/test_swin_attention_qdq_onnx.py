"""onnx(attention_qdq) on a hand-built Q/DQ attention (exact Q/DQ counts and scales, numbers
checked against numpy) and on bevcc's own FX-exported Swin (the FX pass is the reference)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import bevcc

H, N, D = 2, 49, 16  # heads, window tokens, head size (an INT8 MHA head size)
SOFTMAX_SCALE = np.float32(1) / np.float32(127)


def _fq(x, scale):
    """numpy fake quantization as onnxruntime's Q/DQ computes it (round half to even)."""
    scale = np.float32(scale)
    return (np.clip(np.round(x / scale), -128, 127) * scale).astype(np.float32)


class Attention:
    """Swin-style window attention written with Q/DQ the way a quantizer that knows nothing of
    attention writes it: q, k^T and v quantized, and also the scores after the scale Div, the
    relative-position bias, the scores into the mask Add, the mask, and the probabilities at a
    calibrated scale. `probs` is 'calibrated', 'none' (no Q/DQ), 'v_scale' (reading the
    scale initializer of v's Q/DQ, as a unify pass could leave it) or 'uint8' (a uint8 zero
    point, onnxruntime's default for activations); `v_qdq=False` leaves v float, `out_qdq=False` the output, `quantize=False` everything.
    """

    def __init__(self, probs="calibrated", v_qdq=True, quantize=True, out_qdq=True, seed=0):
        rng = np.random.default_rng(seed)
        self.q, self.k, self.v = (
            rng.standard_normal((1, H, N, D)).astype(np.float32) for _ in "qkv"
        )
        self.bias = rng.standard_normal((1, H, N, N)).astype(np.float32)
        mask = np.where(rng.random((1, 1, 1, N, N)) < 0.3, -100.0, 0.0)
        self.mask = mask.astype(np.float32)
        self.scales = {
            "q": np.abs(self.q).max() / 127,
            "kt": np.abs(self.k).max() / 127,
            "v": np.abs(self.v).max() / 127,
            "add": 12.0 / 127,
            "mask": 100.0 / 127,
            "probs": 0.6 / 127,
            "o": np.abs(self.v).max() / 127,  # the output mixes rows of v: bounded by them
        }
        self.probs, self.v_qdq, self.quantize, self.out_qdq = probs, v_qdq, quantize, out_qdq
        self.model = self._build()

    def _build(self):
        nodes, inits = [], []

        def const(name, value):
            inits.append(numpy_helper.from_array(np.asarray(value), name))
            return name

        def qdq(tensor, scale_name, zero="zp"):
            if not self.quantize:
                return tensor
            nodes.append(
                helper.make_node(
                    "QuantizeLinear",
                    [tensor, scale_name, zero],
                    [f"{tensor}_q"],
                    name=f"{tensor}_Q",
                )
            )
            nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{tensor}_q", scale_name, zero],
                    [f"{tensor}_dq"],
                    name=f"{tensor}_DQ",
                )
            )
            return f"{tensor}_dq"

        const("zp", np.int8(0))
        const("zp_u8", np.uint8(0))
        for key, value in self.scales.items():
            const(f"s_{key}", np.float32(value))
        const("bias", self.bias)
        const("mask", self.mask)
        const("sqrt_d", np.float32(np.sqrt(D)))
        const("shape5", np.array([1, 1, H, N, N], np.int64))
        const("shape4", np.array([1, H, N, N], np.int64))
        nodes.append(helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2], name="k_T"))
        nodes.append(
            helper.make_node("MatMul", [qdq("q", "s_q"), qdq("kt", "s_kt")], ["s"], name="qk")
        )
        nodes.append(helper.make_node("Div", ["s", "sqrt_d"], ["sd"], name="scale"))
        nodes.append(
            helper.make_node(
                "Add", [qdq("sd", "s_add"), qdq("bias", "s_add")], ["sb"], name="bias_add"
            )
        )
        nodes.append(helper.make_node("Reshape", ["sb", "shape5"], ["sr"], name="windows"))
        nodes.append(
            helper.make_node(
                "Add", [qdq("sr", "s_mask"), qdq("mask", "s_mask")], ["sm"], name="mask_add"
            )
        )
        nodes.append(helper.make_node("Reshape", ["sm", "shape4"], ["s2"], name="heads"))
        nodes.append(helper.make_node("Softmax", ["s2"], ["p"], axis=-1, name="softmax"))
        probs = {"calibrated": "s_probs", "v_scale": "s_v", "uint8": "s_probs"}.get(self.probs)
        p = qdq("p", probs, "zp_u8" if self.probs == "uint8" else "zp") if probs else "p"
        v = qdq("v", "s_v") if self.v_qdq else "v"
        nodes.append(helper.make_node("MatMul", [p, v], ["o"], name="pv"))
        # the projection after attention reads the output through a Q/DQ
        out = qdq("o", "s_o") if self.out_qdq else "o"
        nodes.append(helper.make_node("Identity", [out], ["y"], name="proj_input"))
        graph = helper.make_graph(
            nodes,
            "window_attention",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, H, N, D]) for n in "qkv"],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, H, N, D])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model, full_check=True)
        return model

    def feeds(self):
        return {"q": self.q, "k": self.k, "v": self.v}

    def reference(self, probs_scale=SOFTMAX_SCALE):
        """What TensorRT's fused MHA computes from this file's q/k/v scales: float scores, the
        probabilities at `probs_scale`."""
        s = self.scales
        scores = _fq(self.q, s["q"]) @ _fq(np.swapaxes(self.k, -1, -2), s["kt"])
        scores = scores / np.float32(np.sqrt(D)) + self.bias
        scores = (scores.reshape(1, 1, H, N, N) + self.mask).reshape(1, H, N, N)
        e = np.exp(scores - scores.max(-1, keepdims=True))
        probs = e / e.sum(-1, keepdims=True)
        return _fq(_fq(probs, probs_scale) @ _fq(self.v, s["v"]), s["o"])


def _run(model, feeds):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)[0]


def _compile(model, tmp_path, registry, pipeline):
    path = tmp_path / "attention.onnx"
    onnx.save(model, path)
    out = tmp_path / "rewritten.onnx"
    result = bevcc.compile(str(path), pipeline=pipeline, output=str(out), registry=registry)
    return result, onnx.load(out)


def _q_nodes(model):
    return [n for n in model.graph.node if n.op_type == "QuantizeLinear"]


def _scale_of(model, node):
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return inits[node.input[1]], inits[node.input[2]]


def test_mha_check_finds_the_score_qdq_behind_the_scale_div(tmp_path, registry):
    """Before attention was found through Div (the scale) and Transpose, mha_check passed this."""
    model = Attention().model
    with pytest.raises(bevcc.PassError) as failure:
        _compile(model, tmp_path, registry, "onnx(mha_check)")
    message = str(failure.value)
    # 4 score-path Q/DQ (scores after Div, bias, scores into the mask Add, mask) + the scale
    assert "5 attention Q/DQ problem(s)" in message
    assert "first: mask_DQ quantizes the scores feeding Softmax softmax;" in message
    assert "or rewrite the Q/DQ file with onnx(attention_qdq)" in message


def test_mha_check_wants_a_qdq_after_the_second_matmul(tmp_path, registry):
    _, model = _compile(Attention(out_qdq=False).model, tmp_path, registry, "onnx(attention_qdq)")
    with pytest.raises(bevcc.PassError) as failure:
        _compile(model, tmp_path, registry, "onnx(mha_check)")
    assert str(failure.value).startswith(
        "pass 'mha_check' failed after []: 1 attention Q/DQ problem(s) TensorRT's INT8 MHA "
        "fusion rejects, first: the output of MatMul pv (Softmax softmax) reaches no Q/DQ; "
        "TensorRT's INT8 MHA wants one after the second matmul;"
    )


def test_rewrite_leaves_exactly_q_k_probs_and_v_quantized(tmp_path, registry):
    attention = Attention()
    assert len(_q_nodes(attention.model)) == 9
    result, model = _compile(
        attention.model, tmp_path, registry, "onnx(attention_qdq,mha_check,check)"
    )
    record = result.records[0]
    assert record.name == "onnx(attention_qdq)" and record.modified
    assert record.stats == {
        "attention": 1,
        "score_quantizers": 4,
        "softmax_fixed": 1,
        "softmax_inserted": 0,
        "float_attention": 0,
    }
    quantized = {n.input[0] for n in _q_nodes(model)}
    assert quantized == {"q", "kt", "p", "v", "o"}
    assert len([n for n in model.graph.node if n.op_type == "DequantizeLinear"]) == 5
    probs_q = next(n for n in _q_nodes(model) if n.input[0] == "p")
    scale, zero = _scale_of(model, probs_q)
    assert scale.dtype == np.float32 and scale == SOFTMAX_SCALE
    assert zero.dtype == np.int8 and zero == 0
    # the other scales are the file's own
    for node in _q_nodes(model):
        if node.input[0] != "p":
            key = {"q": "q", "kt": "kt", "v": "v", "o": "o"}[node.input[0]]
            assert _scale_of(model, node)[0] == np.float32(attention.scales[key])


def test_rewritten_file_computes_what_the_fused_kernel_would(tmp_path, registry):
    """onnxruntime on the rewritten file against numpy: float scores, probabilities at 1/127."""
    attention = Attention()
    _, model = _compile(attention.model, tmp_path, registry, "onnx(attention_qdq)")
    got = _run(model, attention.feeds())
    want = attention.reference()
    # a probability that lands on a rounding midpoint in one and not the other moves one step
    # (1/127 of a v value): allow a handful of such elements, no more
    off = np.abs(got - want) > 1e-5
    assert off.mean() < 1e-3, off.sum()
    step = SOFTMAX_SCALE * np.abs(attention.v).max() + attention.scales["o"]
    assert np.abs(got - want).max() < 2 * step
    # and the file as given computes something else (its score Q/DQ round at 0.09 and 0.79)
    assert np.abs(_run(attention.model, attention.feeds()) - want).max() > 0.05


def test_a_missing_softmax_qdq_is_inserted(tmp_path, registry):
    attention = Attention(probs="none")
    result, model = _compile(attention.model, tmp_path, registry, "onnx(attention_qdq,mha_check)")
    assert result.records[0].stats["softmax_inserted"] == 1
    assert {n.input[0] for n in _q_nodes(model)} == {"q", "kt", "p", "v", "o"}
    assert np.abs(_run(model, attention.feeds()) - attention.reference()).max() < 0.05


def test_a_scale_shared_with_v_is_not_rescaled(tmp_path, registry):
    """The probabilities read v's scale initializer: v keeps its scale, the probabilities get
    their own 1/127."""
    attention = Attention(probs="v_scale")
    _, model = _compile(attention.model, tmp_path, registry, "onnx(attention_qdq,mha_check)")
    scales = {n.input[0]: _scale_of(model, n)[0] for n in _q_nodes(model)}
    assert scales["v"] == np.float32(attention.scales["v"])
    assert scales["p"] == SOFTMAX_SCALE


def test_a_uint8_softmax_pair_becomes_symmetric_int8(tmp_path, registry):
    attention = Attention(probs="uint8")
    _, model = _compile(attention.model, tmp_path, registry, "onnx(attention_qdq,mha_check,check)")
    probs_q = next(n for n in _q_nodes(model) if n.input[0] == "p")
    scale, zero = _scale_of(model, probs_q)
    assert scale == SOFTMAX_SCALE and zero.dtype == np.int8 and zero == 0
    assert np.abs(_run(model, attention.feeds()) - attention.reference()).max() < 0.05


def test_second_run_changes_nothing(tmp_path, registry):
    _, model = _compile(Attention().model, tmp_path, registry, "onnx(attention_qdq)")
    again, _ = _compile(model, tmp_path / "..", registry, "onnx(attention_qdq)")
    assert not again.records[0].modified
    assert again.records[0].stats["attention"] == 1


def test_options_keep_what_they_say(tmp_path, registry):
    model = Attention().model
    result, kept = _compile(
        model, tmp_path, registry, "onnx(attention_qdq{float_scores=false,softmax_amax=none})"
    )
    assert not result.records[0].modified and len(_q_nodes(kept)) == 9
    _, half = _compile(model, tmp_path, registry, "onnx(attention_qdq{softmax_amax=0.5})")
    probs_q = next(n for n in _q_nodes(half) if n.input[0] == "p")
    assert _scale_of(half, probs_q)[0] == np.float32(0.5) / np.float32(127)
    assert len(_q_nodes(half)) == 5


def test_float_attention_is_left_float(tmp_path, registry):
    """No Q/DQ on q, k or v: the attention runs in FP16/FP32 and gets no Q/DQ either."""
    float_model = Attention(quantize=False).model
    result, model = _compile(float_model, tmp_path, registry, "onnx(attention_qdq,mha_check)")
    assert not result.records[0].modified
    assert result.records[0].stats["float_attention"] == 1 and _q_nodes(model) == []


def test_partly_quantized_attention_is_one_error_line(tmp_path, registry):
    with pytest.raises(bevcc.PassError) as failure:
        _compile(Attention(v_qdq=False).model, tmp_path, registry, "onnx(attention_qdq)")
    message = str(failure.value)
    assert "\n" not in message
    assert message.endswith(
        "attention at Softmax softmax is partly quantized: no Q/DQ on v (input 1 of MatMul pv), "
        "and attention_qdq cannot calibrate a scale; quantize every MatMul input "
        "(onnx(qdq_insert) does) or none of this attention's"
    )
    assert not (tmp_path / "rewritten.onnx").exists()


def test_bevcc_fx_export_rewritten_on_onnx_equals_the_fx_pass(compiled, tmp_path, registry):
    """The core pipeline's exported file, rewritten by the ONNX pass, is the file the FX pass
    gives: the same 63 Q/DQ pairs, and onnxruntime computes the same numbers, bit for bit."""
    _, core_model, _ = compiled["core"]
    _, plugin_model, _ = compiled["plugin"]
    result, rewritten = _compile(
        core_model, tmp_path, registry, "onnx(attention_qdq,mha_check,check)"
    )
    assert result.records[0].stats == {
        "attention": 4,
        "score_quantizers": 12,
        "softmax_fixed": 4,
        "softmax_inserted": 0,
        "float_attention": 0,
    }
    assert len(_q_nodes(rewritten)) == len(_q_nodes(plugin_model)) == 63
    from bevcc_swin.reference import calibration_batches

    for batch in calibration_batches(3, seed=7):
        feeds = {rewritten.graph.input[0].name: batch["x"]}
        assert np.array_equal(_run(rewritten, feeds), _run(plugin_model, feeds))
