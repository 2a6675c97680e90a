"""The checks libspconv's ONNX parser makes (docs/libspconv_file.md), in Python.

The engine is closed source and GPU-only; only its parser is open. A file that fails here is one
the engine would reject or run wrongly. `bevcc lint` runs this on files with SparseConvolution.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from bevcc.lint.layers import Layer, module_path, weight_type

__all__ = ["check_libspconv", "int8_share", "is_libspconv_file", "sparse_layers"]

OPS = {"SparseConvolution", "Add", "QuantAdd", "Relu", "ScatterDense", "Reshape", "Transpose"}
PRECISIONS = {"int8", "fp16"}
INTS3 = ("kernel_size", "stride", "padding", "dilation")


def is_libspconv_file(model: onnx.ModelProto) -> bool:
    return any(n.op_type == "SparseConvolution" for n in model.graph.node)


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def check_libspconv(model: onnx.ModelProto) -> list[str]:
    """Problems, each 'node: what is wrong'; empty when the parser would accept the file."""
    graph = model.graph
    problems: list[str] = []
    initializers = {t.name: t for t in graph.initializer}
    for t in graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT16:
            problems.append(
                f"initializer {t.name}: {onnx.TensorProto.DataType.Name(t.data_type)}"
                " (the parser reads float16 only: 'Can not support non float data "
                "type')"
            )
        elif not t.raw_data or len(t.raw_data) != 2 * int(np.prod(t.dims, dtype=np.int64)):
            problems.append(f"initializer {t.name}: not float16 raw_data of {list(t.dims)}")
    ranges: dict[str, float] = {}
    for node in graph.node:
        name = node.name or node.output[0]
        if node.op_type not in OPS:
            problems.append(f"{name}: unsupported operator {node.op_type}")
            continue
        attrs = _attrs(node)
        for key in ("precision", "output_precision"):
            value = attrs.get(key)
            if value is not None and value.decode() not in PRECISIONS:
                problems.append(f"{name}: {key} {value.decode()!r} is not int8 or fp16")
        if node.op_type == "SparseConvolution":
            problems += _check_conv(name, node, attrs, initializers, ranges)
        elif node.op_type in ("Add", "QuantAdd") and attrs.get("precision", b"") == b"int8":
            for i, key in enumerate(("input0_dynamic_range", "input1_dynamic_range")):
                problems += _check_range(name, key, attrs.get(key))
                if i < len(node.input):
                    problems += _same_range(name, node.input[i], attrs.get(key), ranges)
        elif node.op_type in ("Reshape", "Transpose") and "dims" not in attrs:
            problems.append(f"{name}: {node.op_type} needs an INTS attribute `dims`")
        elif node.op_type == "ScatterDense":
            fmt = attrs.get("format", b"").decode()
            if fmt not in ("xyz", "zyx"):
                problems.append(f"{name}: ScatterDense format {fmt!r} is not xyz or zyx")
    return problems


def _check_conv(name, node, attrs, initializers, ranges) -> list[str]:
    out = []
    if len(node.input) < 3 or not node.input[2]:
        return [f"{name}: no bias input (the parser reads one unconditionally)"]
    for key in INTS3:
        if len(attrs.get(key, [])) != 3:
            out.append(f"{name}: {key} must have 3 values")
    weight, bias = initializers.get(node.input[1]), initializers.get(node.input[2])
    if weight is None or bias is None:
        return out + [f"{name}: weight and bias must be initializers"]
    cout = int(bias.dims[0]) if bias.dims else 0
    if len(weight.dims) != 5 or int(weight.dims[0]) != cout:
        out.append(f"{name}: weight {list(weight.dims)} is not [Cout={cout}, k0, k1, k2, Cin]")
    activation = attrs.get("activation", b"None").decode()
    if activation not in ("ReLU", "None"):
        out.append(f"{name}: activation {activation!r} is not ReLU or None")
    if attrs.get("precision", b"fp16") == b"int8":
        out += _check_range(name, "input_dynamic_range", attrs.get("input_dynamic_range"))
        out += _same_range(name, node.input[0], attrs.get("input_dynamic_range"), ranges)
        weights = list(attrs.get("weight_dynamic_ranges", []))
        if len(weights) != cout:
            out.append(
                f"{name}: Invalid weight scales {len(weights)} != {cout} "
                "(weight_dynamic_ranges must have one amax per output channel)"
            )
        bad = [w for w in weights if not (math.isfinite(w) and w > 0)]
        if bad:
            out.append(
                f"{name}: weight_dynamic_ranges has {len(bad)} zero, negative or non-finite values"
            )
    return out


def _check_range(name, key, value) -> list[str]:
    if value is None:
        return [f"{name}: INT8 layer without {key}"]
    if not (math.isfinite(value) and value > 0):
        return [f"{name}: {key} is {value} (must be finite and positive)"]
    return []


def _same_range(name, tensor, value, ranges) -> list[str]:
    """One tensor, one range: every INT8 consumer must read it with the same scale."""
    if value is None:
        return []
    previous = ranges.setdefault(tensor, value)
    if not np.isclose(previous, value, rtol=1e-6, atol=0):
        message = (
            f"{name}: tensor {tensor} has two ranges ({previous:.6g} and {value:.6g}); "
            "its producer can write only one INT8 scale"
        )
        return [message]
    return []


def int8_share(model: onnx.ModelProto) -> tuple[int, int, list[str]]:
    """(INT8 MACs, all MACs, fp16 layers) of the sparse convs (`sparse_layers`)."""
    layers = sparse_layers(model)
    return (
        sum(layer.macs for layer in layers if layer.int8),
        sum(layer.macs for layer in layers),
        [layer.onnx for layer in layers if not layer.int8],
    )


def sparse_layers(model: onnx.ModelProto) -> list[Layer]:
    """The sparse convs as lint layers: INT8 where the node's `precision` attribute says int8
    (libspconv files carry no Q/DQ), MACs as output voxels x kernel volume x Cin x Cout from the
    shapes the exporter recorded (an upper bound per layer: not every kernel offset has a
    neighbour), the module path from the weight's name."""
    producer = {o: n for n in model.graph.node for o in n.output}
    initializers = {t.name: t for t in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type != "SparseConvolution":
            continue
        a = _attrs(node)
        voxels = (a.get("output_shape") or [0])[0]
        macs = int(
            voxels
            * np.prod(a.get("kernel_size", [1]))
            * a.get("in_channels", 0)
            * a.get("out_channels", 0)
        )
        weight = node.input[1] if len(node.input) > 1 else ""
        layers.append(
            Layer(
                onnx=node.name or node.output[0],
                module=module_path(weight, producer, initializers) if weight else None,
                macs=macs,
                int8=a.get("precision", b"fp16") == b"int8",
                weight_type=weight_type(weight, producer, initializers),
                # libspconv computes every conv it does not run in INT8 in FP16
                precision="int8" if a.get("precision", b"fp16") == b"int8" else "fp16",
            )
        )
    return layers
