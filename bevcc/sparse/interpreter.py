"""Run a libspconv file on CPU with spconv: read the file, rebuild the network, push voxels through.

This is how bevcc proves, without the (GPU-only, closed) engine, that the file encodes the
network it was exported from:
- `float` mode: fp16 weights, fp32 arithmetic; matches the source model within fp16 tolerance;
- `int8` mode: additionally fake-quantizes what the engine reads in INT8 (conv inputs with
  input_dynamic_range, weights per output channel with weight_dynamic_ranges, Add inputs with
  input0/1_dynamic_range), symmetric, zero point 0; matches the PyTorch fake-quant model.
xyz files only (a zyx file holds the same network with the axes reversed).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from bevcc.errors import InputError

__all__ = ["LibspconvInterpreter"]


def _attrs(node) -> dict:
    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _fake_quant(x: torch.Tensor, amax, axis: int | None = None) -> torch.Tensor:
    scale = torch.as_tensor(np.asarray(amax, np.float32) / np.float32(127))
    if axis is None:
        return torch.fake_quantize_per_tensor_affine(
            x, scale.reshape(()), torch.zeros((), dtype=torch.int32), -128, 127
        )
    return torch.fake_quantize_per_channel_affine(
        x, scale, torch.zeros(scale.shape, dtype=torch.int32), axis, -128, 127
    )


class LibspconvInterpreter:
    def __init__(self, model: onnx.ModelProto, mode: Literal["float", "int8"] = "float"):
        import spconv.pytorch as spconv

        self.model, self.mode, self.spconv = model, mode, spconv
        self.weights = {
            t.name: numpy_helper.to_array(t).astype(np.float32) for t in model.graph.initializer
        }
        self.layers = {}
        for node in model.graph.node:
            if node.op_type == "SparseConvolution":
                self.layers[node.name] = self._layer(node)
        first = next(n for n in model.graph.node if n.op_type == "SparseConvolution")
        attrs = _attrs(first)
        if attrs.get("input_spatial_shape") is None:
            raise InputError(
                "libspconv file: the first SparseConvolution lacks "
                "input_spatial_shape; cannot rebuild the input grid"
            )
        self.spatial_shape = list(attrs["input_spatial_shape"])

    def _layer(self, node):
        a = _attrs(node)
        spconv = self.spconv
        cls = (
            spconv.SubMConv3d
            if a["subm"]
            else spconv.SparseInverseConv3d
            if a["inverse"]
            else spconv.SparseConvTranspose3d
            if a.get("transposed")
            else spconv.SparseConv3d
        )
        kwargs = {"bias": False, "indice_key": a.get("rulebook") or None}
        if cls is not spconv.SparseInverseConv3d:
            kwargs.update(stride=a["stride"], padding=a["padding"], dilation=a["dilation"])
        weight = self.weights[node.input[1]]
        cout, cin = weight.shape[0], weight.shape[-1]
        layer = cls(cin, cout, list(weight.shape[1:4]), **kwargs).eval()
        if self.mode == "int8" and a.get("precision") == "int8":
            weight = _fake_quant(torch.from_numpy(weight), a["weight_dynamic_ranges"], 0).numpy()
        if layer.conv1x1:  # spconv computes 1x1 with the memory read as [Cin, Cout] (#450)
            weight = weight.reshape(cout, cin).T.reshape(weight.shape)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        return layer

    def __call__(self, features: torch.Tensor, coors: torch.Tensor) -> list[torch.Tensor]:
        spconv = self.spconv
        graph = self.model.graph
        values = {
            graph.input[0].name: spconv.SparseConvTensor(
                features.float(), coors.int(), self.spatial_shape, 1
            )
        }
        for node in graph.node:
            a = _attrs(node)
            x = values[node.input[0]]
            if node.op_type == "SparseConvolution":
                values[node.output[0]] = self._conv(node, a, x)
            elif node.op_type in ("Add", "QuantAdd"):
                y = values[node.input[1]]
                fx, fy = x.features, y.features
                if self.mode == "int8" and a.get("precision") == "int8":
                    fx = _fake_quant(fx, a["input0_dynamic_range"])
                    fy = _fake_quant(fy, a["input1_dynamic_range"])
                values[node.output[0]] = x.replace_feature(fx + fy)
            elif node.op_type == "Relu":
                values[node.output[0]] = x.replace_feature(torch.relu(x.features))
            elif node.op_type == "ScatterDense":
                dense = x.dense()
                values[node.output[0]] = (
                    dense if a["format"] == "xyz" else dense.permute(0, 1, 4, 3, 2)
                )
            elif node.op_type == "Transpose":
                values[node.output[0]] = x.permute(*a["dims"])
            elif node.op_type == "Reshape":
                values[node.output[0]] = x.reshape(*a["dims"])
            else:
                raise InputError(f"libspconv file: unsupported operator {node.op_type}")
        return [values[o.name] for o in graph.output]

    def _conv(self, node, a, x):
        if self.mode == "int8" and a.get("precision") == "int8":
            x = x.replace_feature(_fake_quant(x.features, a["input_dynamic_range"]))
        with torch.no_grad():
            out = self.layers[node.name](x)
        bias = torch.from_numpy(self.weights[node.input[2]])
        features = out.features + bias  # spconv's CPU kernels take no bias in eval mode
        if a.get("activation") == "ReLU":
            features = torch.relu(features)
        return out.replace_feature(features)
