"""`export_libspconv`: the FX sparse backbone -> the file libspconv loads
(docs/libspconv_file.md), decided from the graph, not from module names.

Walks the traced graph once. A sparse conv absorbs what follows it on its features: the folded
bias (SparseConvBias or its own), then a ReLU when nothing else reads the pre-ReLU value (the
PyTorch model keeps computing that ReLU; the file fuses it into `activation`). Quantizer calls
give the input ranges of their consumers; the weight quantizer gives weight_dynamic_ranges. A
layer writes int8 only when every reader reads int8 (the engine takes a layer's output scale from
its consumers), so the first fp16 conv's producer and the conv before ScatterDense write fp16.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import helper
from torch import fx, nn

from bevcc.errors import InputError
from bevcc.ir.fx import FxIR
from bevcc.ir.libspconv import LibspconvIR
from bevcc.passes.export_libspconv import FX
from bevcc.passes.export_libspconv.options import ExportSparseOptions
from bevcc.pm.pass_base import Pass, PassResult
from bevcc.quant.quantizer import TensorQuantizer, check_exportable
from bevcc.sparse.conv_bias import SparseConvBias
from bevcc.sparse.layers import is_sparse_conv


@dataclass
class _Conv:
    node: fx.Node
    module: nn.Module
    x: str
    out: str
    input_range: float | None
    bias: torch.Tensor | None = None
    relu: bool = False


class ExportLibspconv(Pass, declaration=FX):
    def requires(self, ir: FxIR) -> None:
        if ir.example_inputs is None:
            raise InputError(
                "export_libspconv needs example inputs (voxel features and "
                "coordinates): return (module, example_inputs) or give --calib"
            )
        check_exportable(ir.module, "export_libspconv")

    def call(self, ir: FxIR) -> PassResult:
        runtime = _record_runtime(ir)
        writer = _Writer(ir, runtime, self.options)
        model = writer.build()
        return PassResult(
            LibspconvIR(model),
            modified=True,
            stats={"ops": writer.op_counts(), "int8_convs": writer.int8_convs},
        )

    def report(self, stats: dict) -> list[str]:
        ops = ", ".join(f"{k} {v}" for k, v in stats.get("ops", {}).items())
        return [f"wrote {ops}; {stats.get('int8_convs', 0)} convs in INT8"]


def _record_runtime(ir: FxIR) -> dict[fx.Node, object]:
    """Per node: ('sparse', features shape, spatial shape) or ('dense', shape)."""
    seen: dict[fx.Node, object] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            value = super().run_node(n)
            if hasattr(value, "spatial_shape") and hasattr(value, "features"):
                seen[n] = ("sparse", tuple(value.features.shape), list(value.spatial_shape))
            elif isinstance(value, torch.Tensor):
                seen[n] = ("dense", tuple(value.shape))
            return value

    with torch.no_grad():
        Recorder(ir.module).run(*ir.example_inputs)
    return seen


class _Writer:
    def __init__(self, ir: FxIR, runtime, options: ExportSparseOptions):
        self.ir, self.runtime, self.options = ir, runtime, options
        # the file's axes are the model's, reversed when the two orders differ
        self.flip = options.order != options.model_order
        self.modules = dict(ir.module.named_modules())
        self.value: dict[fx.Node, str] = {}  # fx node -> file tensor name
        self.conv_of: dict[str, _Conv] = {}  # tensor written by a conv -> the conv
        self.ranges: dict[fx.Node, float] = {}  # quantizer node -> amax it applies
        self.nodes: list[tuple[str, list, list, dict]] = []  # op, inputs, outputs, attrs
        self.convs: list[_Conv] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[str] = []
        self.int8_convs = 0
        self.int8_reads: dict[str, list[tuple[str, float]]] = {}  # tensor -> (reader, range)

    # ---- graph walk ---------------------------------------------------------------------------
    def build(self) -> onnx.ModelProto:
        for node in self.ir.graph.nodes:
            self._visit(node)
        self._check_one_range_per_tensor()
        self._finish_convs()
        return self._model()

    def _read_int8(self, tensor: str, reader: str, amax: float | None) -> None:
        if amax is not None:
            self.int8_reads.setdefault(tensor, []).append((reader, amax))

    def _check_one_range_per_tensor(self) -> None:
        """libspconv stores a tensor once, in INT8 with one scale, however many layers read it;
        a PyTorch model whose readers quantize it with different ranges is not what the file
        would compute (sparse_conv_quant gives each reader its own quantizer; quantizer_unify
        makes them one)."""
        for tensor, reads in self.int8_reads.items():
            ranges = [amax for _, amax in reads]
            if max(ranges) > min(ranges) * (1 + 1e-6):
                readers = ", ".join(f"{name} {amax:.4g}" for name, amax in reads)
                raise InputError(
                    f"export_libspconv: {tensor} is read in INT8 with different "
                    f"ranges ({readers}), but libspconv stores it once with one "
                    "scale; run quantizer_unify before export_libspconv"
                )

    def _visit(self, node: fx.Node) -> None:
        module = self.modules.get(node.target) if node.op == "call_module" else None
        if node.op == "placeholder" or node.op == "get_attr":
            return
        if node.op == "output":
            results = node.args[0] if isinstance(node.args[0], (tuple, list)) else [node.args[0]]
            self.outputs = [self.value[r] for r in results]
            return
        if (
            node.op == "call_function"
            and getattr(node.target, "__name__", "") == "SparseConvTensor"
        ):
            self._input(node)
        elif isinstance(module, TensorQuantizer):
            self.value[node] = self.value[node.args[0]]
            if module.enabled:
                self.ranges[node] = _amax(module, node.target)
        elif is_sparse_conv(module):
            self._conv(node, module)
        elif node.op == "call_function" and node.target is getattr and node.args[1] == "features":
            self.value[node] = self.value[node.args[0]]
        elif node.op == "call_method" and node.target == "replace_feature":
            self.value[node] = self.value[node.args[1]]
        elif isinstance(module, SparseConvBias):
            self._bias(node, module)
        elif _is_relu(node, module):
            self._relu(node)
        elif node.op == "call_function" and node.target is operator.add:
            self._add(node)
        elif node.op == "call_method" and node.target == "dense":
            self._scatter_dense(node)
        elif node.op == "call_method" and node.target == "contiguous":
            self.value[node] = self.value[node.args[0]]
        elif (node.op == "call_method" and node.target == "permute") or (
            node.op == "call_function" and node.target is torch.permute
        ):
            dims = node.args[1:] if len(node.args) > 2 else node.args[1]
            self._emit(node, "Transpose", [self.value[node.args[0]]], {"dims": list(dims)})
        elif (node.op == "call_method" and node.target in ("flatten", "reshape", "view")) or (
            node.op == "call_function" and node.target in (torch.flatten, torch.reshape)
        ):
            self._emit(
                node, "Reshape", [self.value[node.args[0]]], {"dims": list(self.runtime[node][1])}
            )
        else:
            what = (
                node.target
                if isinstance(node.target, str)
                else getattr(node.target, "__name__", str(node.target))
            )
            raise InputError(
                f"export_libspconv: node {node.name} ({node.op} {what}) has no "
                "libspconv equivalent (supported: sparse convs, residual Add, ReLU, "
                "dense(), permute, flatten/reshape)"
            )

    def _input(self, node: fx.Node) -> None:
        features = node.args[0]
        shape = self.runtime[features][1]
        name = "voxels" if features.op == "placeholder" else features.name
        self.inputs.append(
            helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT16, ["N", int(shape[1])])
        )
        self.value[node] = name
        self.value[features] = name

    def _conv(self, node: fx.Node, module) -> None:
        source = node.args[0]
        out = f"{node.target}.output"
        conv = _Conv(
            node,
            module,
            self.value[source],
            out,
            self.ranges.get(source),
            bias=module.bias.detach().clone() if module.bias is not None else None,
        )
        if hasattr(module, "weight_quantizer") and module.weight_quantizer.enabled:
            self._read_int8(conv.x, str(node.target), conv.input_range)
        self.convs.append(conv)
        self.conv_of[out] = conv
        self.value[node] = out

    def _bias(self, node: fx.Node, module: SparseConvBias) -> None:
        tensor = self.value[node.args[0]]
        conv = self.conv_of.get(tensor)
        if conv is None or conv.bias is not None or conv.relu:
            raise InputError(
                f"export_libspconv: {node.target} adds a bias that does not follow "
                "its sparse conv directly"
            )
        conv.bias = module.bias.detach().clone()
        self.value[node] = tensor

    def _relu(self, node: fx.Node) -> None:
        tensor = self.value[node.args[0]]
        conv = self.conv_of.get(tensor)
        if conv is not None and not conv.relu and _only_reader(node.args[0], node):
            conv.relu = True  # fused into `activation`; PyTorch keeps its ReLU
            self.value[node] = tensor
            return
        self._emit(node, "Relu", [tensor], {})

    def _add(self, node: fx.Node) -> None:
        a, b = node.args[:2]
        ranges = [self.ranges.get(a), self.ranges.get(b)]
        attrs = {}
        if all(r is not None for r in ranges):
            attrs = {
                "input0_dynamic_range": ranges[0],
                "input1_dynamic_range": ranges[1],
                "precision": "int8",
            }
            for value, amax in zip((a, b), ranges, strict=True):
                self._read_int8(self.value[value], node.name, amax)
        else:
            attrs = {"precision": "fp16"}
        self._emit(node, "Add", [self.value[a], self.value[b]], attrs)

    def _scatter_dense(self, node: fx.Node) -> None:
        source = node.args[0]
        _, _, spatial = self.runtime[source]
        model_layout = list(self.runtime[node][1])
        if self.options.model_order == "zyx":  # ScatterDense writes N,C,x,y,z whatever the order
            dense_layout = model_layout[:2] + model_layout[2:][::-1]
        else:
            dense_layout = model_layout
        attrs = {
            "input_spatial_shape": _order(spatial, self.flip),
            "output_shape": dense_layout,
            "format": self.options.order,
        }
        self._emit(node, "ScatterDense", [self.value[source]], attrs)
        if self.options.model_order == "zyx":
            # back to the N,C,z,y,x the model's dense() gave, which its later ops assume
            self._emit(
                node,
                "Transpose",
                [self.value[node]],
                {"dims": [0, 1, 4, 3, 2]},
                name=f"{node.name}_to_model_order",
            )

    def _emit(
        self, node: fx.Node, op: str, inputs: list[str], attrs: dict, name: str | None = None
    ) -> None:
        """One file node for `node`; a second one for the same fx node passes its own name and
        follows the first (the final sort is stable and keys on the fx node)."""
        out = f"{name or node.name}.output"
        self.nodes.append((op, inputs, [out], dict(attrs, _name=name or node.name, _fx=node.name)))
        self.value[node] = out

    # ---- convs, once all their readers are known ---------------------------------------------
    def _finish_convs(self) -> None:
        readers: dict[str, list[tuple[str, dict, list[str]]]] = {}
        for op, inputs, outputs, attrs in self.nodes:
            for name in inputs:
                readers.setdefault(name, []).append((op, attrs, outputs))
        conv_inputs: dict[str, list[_Conv]] = {}
        for conv in self.convs:
            conv_inputs.setdefault(conv.x, []).append(conv)
        entries = []
        for conv in self.convs:
            m = conv.module
            int8 = (
                hasattr(m, "weight_quantizer")
                and m.weight_quantizer.enabled
                and conv.input_range is not None
            )
            self.int8_convs += int8
            out_int8 = self._reads_int8(conv.out, readers, conv_inputs)
            attrs = self._conv_attrs(conv, int8, out_int8)
            weight, bias = self._weights(conv)
            w_name, b_name = f"{conv.node.target}.weight", f"{conv.node.target}.bias"
            self.initializers += [_fp16(w_name, weight), _fp16(b_name, bias)]
            entries.append(
                (
                    "SparseConvolution",
                    [conv.x, w_name, b_name],
                    [conv.out],
                    dict(attrs, _name=conv.node.name, _fx=conv.node.name),
                )
            )
        for op, _inputs, outputs, attrs in self.nodes:
            if op == "Add":
                int8_out = attrs["precision"] == "int8" and self._reads_int8(
                    outputs[0], readers, conv_inputs
                )
                attrs["output_precision"] = "int8" if int8_out else "fp16"
        # one list in the order the graph computes it
        graph_order = {n.name: i for i, n in enumerate(self.ir.graph.nodes)}
        everything = entries + self.nodes
        self.nodes = sorted(everything, key=lambda entry: graph_order[entry[3]["_fx"]])

    def _reads_int8(self, tensor: str, readers, conv_inputs) -> bool:
        """Every consumer reads `tensor` in INT8 (looking through Relu, which the engine fuses);
        a graph output, ScatterDense, Transpose or Reshape reads fp16."""
        consumers = [
            hasattr(c.module, "weight_quantizer") and c.input_range is not None
            for c in conv_inputs.get(tensor, [])
        ]
        for op, attrs, outputs in readers.get(tensor, []):
            if op == "Add":
                consumers.append(attrs.get("precision") == "int8")
            elif op == "Relu":
                consumers.append(self._reads_int8(outputs[0], readers, conv_inputs))
            else:
                consumers.append(False)
        if tensor in self.outputs:
            consumers.append(False)
        return bool(consumers) and all(consumers)

    def _conv_attrs(self, conv: _Conv, int8: bool, out_int8: bool) -> dict:
        m, flip = conv.module, self.flip
        _, in_features, in_spatial = self.runtime[conv.node.args[0]]
        _, out_features, out_spatial = self.runtime[conv.node]
        attrs = {
            "ndim": 3,
            "kernel_size": _order(m.kernel_size, flip),
            "stride": _order(m.stride, flip),
            "padding": _order(m.padding, flip),
            "dilation": _order(m.dilation, flip),
            "output_padding": _order(m.output_padding, flip),
            "subm": int(m.subm),
            "inverse": int(m.inverse),
            "transposed": int(m.transposed),
            "groups": int(m.groups),
            "in_channels": int(m.in_channels),
            "out_channels": int(m.out_channels),
            "rulebook": m.indice_key or "",
            "activation": "ReLU" if conv.relu else "None",
            "output_bound": int(self.options.output_bound),
            "input_spatial_shape": _order(in_spatial, flip),
            "output_spatial_shape": _order(out_spatial, flip),
            "input_shape": list(in_features),
            "output_shape": list(out_features),
            "precision": "int8" if int8 else "fp16",
            # an fp16 layer may still write INT8 for INT8 readers (the engine quantizes its output
            # with the readers' shared range)
            "output_precision": "int8" if out_int8 else "fp16",
        }
        if int8:
            attrs["input_dynamic_range"] = conv.input_range
            ranges = [float(v) for v in m.weight_quantizer.amax.detach().reshape(-1)]
            if not all(math.isfinite(v) and v > 0 for v in ranges):
                raise InputError(
                    f"export_libspconv: {conv.node.target} has zero or non-finite "
                    "weight ranges; recalibrate (qdq/sparse_conv_quant)"
                )
            attrs["weight_dynamic_ranges"] = ranges
        return attrs

    def _weights(self, conv: _Conv) -> tuple[np.ndarray, np.ndarray]:
        m = conv.module
        weight = m.weight.detach().cpu().double().numpy()
        if m.conv1x1:  # spconv computes 1x1 with the memory read as [Cin, Cout] (spconv#450)
            weight = weight.reshape(m.in_channels, m.out_channels).T.reshape(weight.shape)
        if self.flip:
            weight = weight.transpose(0, 3, 2, 1, 4)
        bias = (
            conv.bias.detach().cpu().double().numpy()
            if conv.bias is not None
            else np.zeros(m.out_channels)
        )
        for what, values in (("weight", weight), ("bias", bias)):
            if not np.isfinite(values).all():
                raise InputError(
                    f"export_libspconv: the {what} of {conv.node.target} has NaN "
                    "or inf; fix the checkpoint"
                )
        return weight, bias

    # ---- the file -----------------------------------------------------------------------------
    def _model(self) -> onnx.ModelProto:
        nodes = []
        for op, inputs, outputs, attrs in self.nodes:
            name = attrs.pop("_name")
            attrs.pop("_fx")
            nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        outputs = [
            helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT16, None) for o in self.outputs
        ]
        graph = helper.make_graph(nodes, "libspconv", self.inputs, outputs, self.initializers)
        model = helper.make_model(
            graph, producer_name="bevcc", opset_imports=[helper.make_opsetid("", 11)]
        )
        return model

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op, *_ in self.nodes:
            counts[op] = counts.get(op, 0) + 1
        return dict(sorted(counts.items()))


def _amax(module: TensorQuantizer, name: str) -> float:
    """The range a consumer reads (requires() checked it is calibrated and finite)."""
    return float(module.amax.detach().reshape(-1).max())


def _is_relu(node: fx.Node, module) -> bool:
    return isinstance(module, nn.ReLU) or (
        node.op == "call_function" and node.target in (torch.relu, nn.functional.relu)
    )


def _only_reader(value: fx.Node, reader: fx.Node) -> bool:
    """`reader` is the only use of `value` apart from replace_feature's sparse-tensor slot."""
    return all(u is reader for u in value.users)


def _order(values, flip: bool) -> list[int]:
    values = [int(v) for v in values]
    return values[::-1] if flip else values


def _fp16(name: str, array: np.ndarray) -> onnx.TensorProto:
    data = np.ascontiguousarray(array, dtype=np.float16)
    tensor = onnx.TensorProto(name=name, data_type=onnx.TensorProto.FLOAT16, dims=list(data.shape))
    tensor.raw_data = data.tobytes()
    return tensor
