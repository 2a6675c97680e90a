"""Units of a quantized FX model: the smallest sets of quantizers that can be switched together.

A quantized layer's weight quantizer and the input quantizers feeding it belong together, and a
quantizer shared by several layers (quantizer_unify) ties those layers into one unit: keeping one
of them float while the shared scale stays would not be a real choice. Union-find, linear time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import fx, nn

from bevcc.ir.fx import FxIR
from bevcc.ir.union_find import UnionFind
from bevcc.quant.quantizer import TensorQuantizer
from bevcc.trt.fx_ops import rule_for_fx


@dataclass
class Unit:
    name: str  # the first layer's name (or the quantizer's, for layer-less ones)
    layers: list[str] = field(default_factory=list)
    quantizers: list[str] = field(default_factory=list)
    macs: int = 0

    def set_enabled(self, module: nn.Module, enabled: bool) -> None:
        for name in self.quantizers:
            module.get_submodule(name).enabled = enabled


def find_units(ir: FxIR) -> list[Unit]:
    module, graph = ir.module, ir.graph
    modules = dict(module.named_modules())
    groups = UnionFind()
    layers: list[tuple[str, fx.Node]] = []
    for node in graph.nodes:
        rule = rule_for_fx(node, modules)
        if rule is not None and rule.join:
            # an Add whose inputs are all quantized runs INT8 as a whole or not at all (libspconv's
            # Add has one precision; TensorRT fuses it into the conv): one unit
            quantized = [
                a.target
                for a in node.all_input_nodes
                if a.op == "call_module" and isinstance(modules.get(a.target), TensorQuantizer)
            ]
            for other in quantized[1:]:
                groups.union("q:" + quantized[0], "q:" + other)
            continue
        if node.op != "call_module":
            continue
        target = modules.get(node.target)
        if isinstance(target, TensorQuantizer):
            groups.find("q:" + node.target)
            continue
        quantizer = getattr(target, "weight_quantizer", None)
        if not isinstance(quantizer, TensorQuantizer):
            continue
        layers.append((node.target, node))
        groups.union("l:" + node.target, "q:" + f"{node.target}.weight_quantizer")
        for arg in node.all_input_nodes:
            if arg.op == "call_module" and isinstance(modules.get(arg.target), TensorQuantizer):
                groups.union("l:" + node.target, "q:" + arg.target)
    units: dict[str, Unit] = {}
    for key in list(groups.parent):
        root = groups.find(key)
        unit = units.setdefault(root, Unit(name=""))
        kind, name = key.split(":", 1)
        (unit.layers if kind == "l" else unit.quantizers).append(name)
    macs = layer_macs(ir)
    result = []
    for unit in units.values():
        unit.layers.sort()
        unit.quantizers.sort()
        order = [n for n, _ in layers if n in unit.layers]
        unit.name = order[0] if order else unit.quantizers[0]
        unit.macs = sum(macs.get(n, 0) for n in unit.layers)
        result.append(unit)
    position = {n: i for i, (n, _) in enumerate(layers)}
    return sorted(result, key=lambda u: (position.get(u.name, len(position)), u.name))


def layer_macs(ir: FxIR) -> dict[str, int]:
    """Multiply-accumulates per dense layer from the recorded shapes (sparse layers: 0, their
    cost depends on the voxels)."""
    modules = dict(ir.module.named_modules())
    macs = {}
    for node in ir.graph.nodes:
        rule = rule_for_fx(node, modules) if node.op == "call_module" else None
        meta = node.meta.get("tensor_meta")
        if rule is None or rule.macs is None or meta is None or not hasattr(meta, "shape"):
            continue
        # the ONNX row's count (bevcc.trt.macs) from module weights: Conv and Linear
        # [Cout, ...] per output element, ConvTranspose [Cin, ...] per input element
        per_element = int(np.prod(modules[node.target].weight.shape[1:]))
        if rule.macs == "per_input":
            x = _input_meta(node.all_input_nodes[0], modules)
            if x is not None:
                macs[node.target] = int(np.prod(x.shape)) * per_element
        else:
            macs[node.target] = int(np.prod(meta.shape)) * per_element
    return macs


def _input_meta(node: fx.Node, modules: dict):
    """The input's recorded shape, looking through quantizers: those inserted after tracing
    (quantizer_unify's) carry none, and a quantizer keeps its input's shape."""
    while (
        "tensor_meta" not in node.meta
        and node.op == "call_module"
        and isinstance(modules.get(node.target), TensorQuantizer)
        and node.all_input_nodes
    ):
        node = node.all_input_nodes[0]
    return node.meta.get("tensor_meta")
