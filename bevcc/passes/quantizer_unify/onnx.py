"""onnx `quantizer_unify`: the FX pass's scale domains on any Q/DQ ONNX file (bevcc's,
onnxruntime's, modelopt's). Every activation Q/DQ in a domain reads one scale initializer;
the domain's scale is the widest of its members' (nothing that fit before clips after; with max
calibration it is exactly the max over all the domain's values, as on the FX path). Missing
quantizers on Add (or two-input Sum) identity inputs and Concat inputs are inserted with their
domain's scale; an Add of a constant (a bias) is no join and gets none. An Add with both inputs
quantized (add=shared, or no layer to fuse into under add=residual) joins their domains, as the
FX pass does: TensorRT's INT8 Add reformats an input whose scale differs.
Q/DQ pairs left doing the same job on the same tensor are merged into one.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from bevcc.ir.onnx import OnnxIR
from bevcc.passes.quantizer_unify import ONNX
from bevcc.pm.pass_base import Pass, PassResult
from bevcc.trt.domains import QdqGraph
from bevcc.trt.rules import ALL, rule_for


class QuantizerUnifyOnnx(Pass, declaration=ONNX):
    def report(self, stats: dict) -> list[str]:
        inserted = stats.get("inserted", {})
        line = (
            f"{stats.get('domains', 0)} scale domains; rescaled {stats.get('rescaled', 0)} "
            f"Q/DQ, merged {stats.get('merged', 0)} pairs, inserted on Add inputs "
            f"{inserted.get('add', 0)}, on Concat inputs {inserted.get('concat', 0)}; left "
            f"float (no scale known): {', '.join(stats.get('unscaled', [])) or 'none'}"
        )
        return [line]

    def call(self, ir: OnnxIR) -> PassResult:
        model = ir.to_model()
        view = QdqGraph(model)
        order = {id(n): i for i, n in enumerate(view.nodes)}
        # Q/DQ go on the Add inputs the policy names; where that is both (`shared`, or no layer
        # to fuse into), the Add runs in INT8 and its inputs share one scale, as on FX
        add_targets = {
            id(node): self._add_targets(view, node, order)
            for node in view.nodes
            if view.is_activation_add(node)
        }
        for node in view.nodes:
            if len(add_targets.get(id(node), ())) == 2:
                view.domains.union(node.input[0], node.input[1])
        before = view.domain_scales()
        # where new Q/DQ go: (consumer node name, input index)
        wanted: list[tuple[str, int, str]] = []
        for node in view.nodes:
            for index in add_targets.get(id(node), ()):
                wanted.append((node.output[0], index, "add"))
            rule = rule_for(node)
            if (
                rule is not None
                and rule.shares_scale is ALL
                and self.options.concat_inputs
                and view.domains.find(node.output[0]) in before
            ):
                for index in range(len(node.input)):
                    wanted.append((node.output[0], index, "concat"))
        graph = ir.graph
        tensors = graph.tensors()
        scale_of_domain = {root: max(scales) for root, scales in before.items()}
        inserted = {"add": 0, "concat": 0}
        unscaled = []
        for output, index, kind in wanted:
            node = tensors[output].inputs[0]  # node names may be empty; outputs are unique
            node_name = node.name or output
            tensor = node.inputs[index]
            if tensor.inputs and tensor.inputs[0].op == "DequantizeLinear":
                continue  # already quantized on this edge
            root = view.domains.find(tensor.name)
            if root not in scale_of_domain:
                unscaled.append(f"{node_name} input {index}")
                continue
            node.inputs[index] = _qdq(graph, tensor, scale_of_domain[root], tensors)
            inserted[kind] += 1
        rescaled, repointed = self._share_scales(graph, view, scale_of_domain, tensors)
        merged = _merge_twins(graph)
        changed = bool(repointed or merged or any(inserted.values()))
        if changed:
            graph.cleanup(remove_unused_graph_inputs=False)
            graph.toposort()
        return PassResult(
            ir,
            modified=changed,
            stats={
                "domains": len(before),
                "rescaled": rescaled,
                "merged": merged,
                "inserted": inserted,
                "unscaled": unscaled,
            },
        )

    def _add_targets(self, view: QdqGraph, node, order) -> list[int]:
        if self.options.add == "shared":
            return [0, 1]
        convs = [_from_layer(view, name) for name in node.input]
        if convs == [True, False]:
            return [1]
        if convs == [False, True]:
            return [0]
        if convs == [True, True]:
            first = (
                order[id(view.producer[node.input[0]])] < order[id(view.producer[node.input[1]])]
            )
            return [0] if first else [1]
        return [0, 1]

    @staticmethod
    def _share_scales(graph: gs.Graph, view: QdqGraph, scale_of_domain, tensors) -> tuple[int, int]:
        """Point every activation Q/DQ at its domain's one scale initializer.

        Returns (rescaled, repointed): Q/DQ whose scale value changed, and Q/DQ moved to another
        scale or zero-point initializer. A domain whose Q/DQ already read one scale and one zero
        point is left as it is: renaming its initializers would change the file for nothing.
        """
        members: dict[str, list[gs.Node]] = {}
        for node in graph.nodes:
            root = _activation_domain(node, view)
            if root in scale_of_domain:
                members.setdefault(root, []).append(node)
        rescaled = repointed = 0
        for root, nodes in members.items():
            if len({_qparams(node) for node in nodes}) == 1:
                continue  # one (scale, zero point) pair: its value is the domain's maximum
            value = np.asarray(scale_of_domain[root], np.float32).reshape(())
            scale = gs.Constant(_unique(f"{root}_shared_scale", tensors), value)
            zero = gs.Constant(_unique(f"{root}_shared_zero_point", tensors), np.zeros((), np.int8))
            for node in nodes:
                if float(np.asarray(node.inputs[1].values)) != float(value):
                    rescaled += 1
                node.inputs[1] = scale
                if len(node.inputs) > 2:
                    node.inputs[2] = zero
                repointed += 1
        return rescaled, repointed


def _from_layer(view: QdqGraph, name: str) -> bool:
    """Produced straight by a compute layer: TensorRT can fuse the Add into it."""
    rule = rule_for(view.producer[name]) if name in view.producer else None
    return rule is not None and rule.layer


def _activation_domain(node: gs.Node, view: QdqGraph) -> str | None:
    """The scale domain of a per-tensor activation Q or DQ (None for anything else)."""
    if node.op not in ("QuantizeLinear", "DequantizeLinear") or len(node.inputs) < 2:
        return None
    scale = node.inputs[1]
    if not isinstance(scale, gs.Constant) or np.asarray(scale.values).size != 1:
        return None
    if node.op == "QuantizeLinear":
        source = node.inputs[0]
    elif node.inputs[0].inputs and node.inputs[0].inputs[0].op == "QuantizeLinear":
        source = node.inputs[0].inputs[0].inputs[0]
    else:
        return None  # a DQ of stored int8 values: no float source to place
    if isinstance(source, gs.Constant):
        return None  # a weight
    return view.domains.find(source.name)


def _qparams(node: gs.Node) -> tuple[int, int | None]:
    """Which scale and zero-point initializers (by identity) a Q/DQ reads."""
    return id(node.inputs[1]), id(node.inputs[2]) if len(node.inputs) > 2 else None


def _merge_twins(graph: gs.Graph) -> int:
    """Q nodes on one tensor with the same scale: keep one Q/DQ pair, rewire the others."""
    merged = 0
    seen: dict[tuple, gs.Node] = {}
    for node in list(graph.nodes):
        if node.op != "QuantizeLinear" or len(node.outputs[0].outputs) != 1:
            continue
        dq = node.outputs[0].outputs[0]
        if dq.op != "DequantizeLinear":
            continue
        key = (node.inputs[0].name, node.inputs[1].name, tuple(sorted(dq.attrs.items())))
        twin = seen.get(key)
        if twin is None:
            seen[key] = dq
            continue
        for consumer in list(dq.outputs[0].outputs):
            for i, t in enumerate(consumer.inputs):
                if t is dq.outputs[0]:
                    consumer.inputs[i] = twin.outputs[0]
        for i, out in enumerate(graph.outputs):
            if out is dq.outputs[0]:
                graph.outputs[i] = twin.outputs[0]
        merged += 1
    return merged


def _unique(base: str, tensors: dict) -> str:
    name, i = base, 1
    while name in tensors:
        name, i = f"{base}_{i}", i + 1
    tensors[name] = None
    return name


def _qdq(graph: gs.Graph, tensor: gs.Tensor, scale: float, tensors: dict) -> gs.Variable:
    value = gs.Constant(
        _unique(f"{tensor.name}_scale", tensors), np.asarray(scale, np.float32).reshape(())
    )
    zero = gs.Constant(_unique(f"{tensor.name}_zero_point", tensors), np.zeros((), np.int8))
    quantized = gs.Variable(
        _unique(f"{tensor.name}_unified_q", tensors), dtype=np.int8, shape=tensor.shape
    )
    out = gs.Variable(
        _unique(f"{tensor.name}_unified_dq", tensors), dtype=tensor.dtype, shape=tensor.shape
    )
    graph.nodes.append(
        gs.Node(
            "QuantizeLinear",
            _unique(f"{tensor.name}_unified_Q", tensors),
            inputs=[tensor, value, zero],
            outputs=[quantized],
        )
    )
    graph.nodes.append(
        gs.Node(
            "DequantizeLinear",
            _unique(f"{tensor.name}_unified_DQ", tensors),
            inputs=[quantized, value, zero],
            outputs=[out],
        )
    )
    return out
