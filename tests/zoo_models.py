"""The `onnx` package's light model zoo (real architectures, opset 9) made runnable: every
ConstantOfShape weight stub becomes a seeded random initializer.

The light files replace each large float initializer by `ConstantOfShape(shape) = 0.02`, so run
as shipped every conv sees one constant filter and every channel carries the same value: useless
for calibration or parity. Here each stub gets values drawn for the role its readers give it
(He-normal conv/Gemm weights keep ReLU activations at a steady scale through 100+ layers; a
BatchNormalization variance is positive), the shape initializers that fed the stubs go, and the
rest of the file (ops, attributes, real initializers, opset, static 1x3x224x224 input) is kept.
The installed files are only read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def light_models() -> list[str]:
    """Names (file stems) of every light model the installed onnx ships."""
    return sorted(p.stem for p in LIGHT_DIR.glob("light_*.onnx"))


def seeded_model(name: str, seed: int = 0) -> onnx.ModelProto:
    """The light model `name` with seeded weights in place of its ConstantOfShape stubs."""
    model = onnx.load(str(LIGHT_DIR / f"{name}.onnx"))
    graph = model.graph
    rng = np.random.default_rng(seed)
    initializers = {t.name: t for t in graph.initializer}
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for index, tensor in enumerate(node.input):
            readers.setdefault(tensor, []).append((node, index))
    stubs = [n for n in graph.node if n.op_type == "ConstantOfShape" and n.input[0] in initializers]
    shape_inputs = set()
    for stub in stubs:
        shape = tuple(int(d) for d in numpy_helper.to_array(initializers[stub.input[0]]))
        values = _draw(rng, shape, _role(stub.output[0], readers))
        graph.initializer.append(
            numpy_helper.from_array(np.asarray(values, np.float32), stub.output[0])
        )
        # IR version 3 (these files) lists every initializer among the graph inputs too
        graph.input.append(
            helper.make_tensor_value_info(stub.output[0], onnx.TensorProto.FLOAT, shape)
        )
        shape_inputs.add(stub.input[0])
    stub_ids = {id(n) for n in stubs}
    kept = [n for n in graph.node if id(n) not in stub_ids]
    del graph.node[:]
    graph.node.extend(kept)
    still_read = {t for n in kept for t in n.input}
    dead = shape_inputs - still_read
    _remove(graph.initializer, dead)
    _remove(graph.input, dead)
    return model


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """`model`, changed in place to also output the tensors `names` (parity on inner tensors;
    no copy: these files reach 550 MB)."""
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(helper.make_empty_tensor_value_info(name))
    return model


def logits(model: onnx.ModelProto) -> list[str]:
    """The inputs of the model's Softmax nodes: a softmax over 1000 classes squashes all but the
    top logits to ~0, so parity is measured before it as well."""
    return [n.input[0] for n in model.graph.node if n.op_type == "Softmax"]


def _role(tensor: str, readers) -> str:
    """What the stub feeds, looking through the Unsqueeze densenet/inception_v2 put before their
    per-channel Mul/Add, and the Reshape inception_v1 puts before its classifier weight."""
    for node, index in readers.get(tensor, []):
        if node.op_type in ("Unsqueeze", "Reshape") and index == 0:
            return _role(node.output[0], readers)
        if node.op_type == "Conv":
            return "conv_weight" if index == 1 else "bias"
        if node.op_type == "Gemm":
            transposed = any(a.name == "transB" and a.i for a in node.attribute)
            if index == 1:
                return "gemm_weight_t" if transposed else "gemm_weight"
            return "bias"
        if node.op_type == "BatchNormalization":
            return ("bn_scale", "bn_bias", "bn_mean", "bn_var")[index - 1]
        if node.op_type == "Mul":
            return "bn_scale"
        if node.op_type == "Add":
            return "bias"
    raise ValueError(f"ConstantOfShape stub {tensor} feeds no weight input this helper knows")


def _draw(rng: np.random.Generator, shape: tuple[int, ...], role: str) -> np.ndarray:
    if role == "conv_weight":  # [out, in/group, k...]: He-normal over the fan-in
        return rng.standard_normal(shape, np.float32) * np.float32(
            np.sqrt(2.0 / np.prod(shape[1:]))
        )
    if role in ("gemm_weight_t", "gemm_weight"):  # [N, K] with transB, else [K, N]
        fan_in = shape[1] if role == "gemm_weight_t" else shape[0]
        return rng.standard_normal(shape, np.float32) * np.float32(np.sqrt(2.0 / fan_in))
    if role == "bn_scale":
        return rng.uniform(0.5, 1.5, shape)
    if role == "bn_var":  # positive, so the folded scale 1/sqrt(var+eps) stays finite
        return rng.uniform(0.5, 2.0, shape)
    return rng.normal(0.0, 0.1, shape)  # biases, BN shifts and means


def _remove(container, names: set[str]) -> None:
    kept = [item for item in container if item.name not in names]
    del container[:]
    container.extend(kept)
