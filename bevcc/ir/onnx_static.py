"""What an ONNX file's fixed input shapes decide before any data is seen.

A raw exporter's graph (torch.onnx's TorchScript path on a transformer) recomputes every shape at
run time: `Shape -> Gather -> Unsqueeze -> Concat -> Reshape` chains, masks built from
`ConstantOfShape` and `Range`, all constant once the inputs' shapes are. onnx's shape inference
with data propagation follows those chains to static shapes; this module runs it on a skeleton
of the file (weights replaced by typed inputs: cheap, and never over protobuf's 2 GiB limit) and
names the nodes whose outputs are then constants.
"""

from __future__ import annotations

import onnx

from bevcc.ir.onnx_shapes import InferenceCrash, infer_shapes

__all__ = ["NEVER_FOLDED", "constant_nodes", "inferred_shapes", "is_static"]

# Ops whose output is not a function of constant inputs alone, or must stay as they are:
# Q/DQ pairs are what TensorRT reads the INT8 placement from (a folded weight Q/DQ pair would be
# a float weight), random ops draw new values each run.
NEVER_FOLDED = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)
_DEFAULT_DOMAINS = ("", "ai.onnx")
_SKELETON_LIMIT = 1024  # initializers with more elements are weights, never shape data


def inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str | None, ...]]:
    """Every tensor's shape as inference (with data propagation) finds it, by name: an int per
    static dimension, the name of a dynamic one (or None where inference has none).

    `model` is not changed. A graph the inference rejects or crashes on gives {}: nothing is
    known static, so nothing is folded because of it (the verifier reports the graph's fault).
    """
    try:
        inferred = infer_shapes(_skeleton(model), data_prop=True)
    except (InferenceCrash, onnx.shape_inference.InferenceError, RuntimeError):
        return {}
    shapes = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        shapes[info.name] = tuple(
            int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor_type.shape.dim
        )
    return shapes


def is_static(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d >= 0 for d in shape)


def constant_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The nodes a fold would replace by constants: a Shape or Size of a tensor whose shape the
    inputs fix, and any other node (not a Constant, not in NEVER_FOLDED) reading only constants."""
    constants = {t.name for t in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    needs_shapes = any(n.op_type in ("Shape", "Size") for n in model.graph.node)
    shapes = inferred_shapes(model) if needs_shapes else {}
    found = []
    for node in model.graph.node:
        if node.domain not in _DEFAULT_DOMAINS or node.op_type in NEVER_FOLDED:
            continue
        if node.op_type == "Constant" or (node.attribute and _has_subgraph(node)):
            continue
        inputs = [name for name in node.input if name]
        if node.op_type in ("Shape", "Size") and inputs and is_static(shapes.get(inputs[0])):
            found.append(node)
            constants.update(node.output)
        elif inputs and all(name in constants for name in inputs):
            found.append(node)
            constants.update(node.output)  # what reads it is constant too
    return found


def _has_subgraph(node: onnx.NodeProto) -> bool:
    return any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute
    )


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose large initializers are typed graph inputs: shape inference needs
    their shapes, not their values (shape data is small integers, kept)."""
    graph = model.graph
    skeleton = onnx.ModelProto(ir_version=model.ir_version)
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    # field by field: copying the model would copy its weights, most of a file's bytes
    skeleton.graph.name = graph.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(skeleton.graph, field).extend(getattr(graph, field))
    declared = {i.name for i in skeleton.graph.input}
    for init in graph.initializer:
        elements = 1
        for dim in init.dims:
            elements *= dim
        if elements <= _SKELETON_LIMIT:
            skeleton.graph.initializer.append(init)
        elif init.name not in declared:
            skeleton.graph.input.append(
                onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
            )
    return skeleton
