"""fx `quantizer_unify`: one quantizer per scale domain, decided from the graph.

A scale domain is what TensorRT makes share one INT8 scale: a tensor with all its consumers,
the values data-movement ops pass on (MaxPool, reshapes, transposes, slices, nearest upsampling),
all inputs and the output of a Concat, and the inputs of an Add under the `shared` policy. Every
quantizer call in a domain becomes a call of one TensorQuantizer instance, calibrated over all
the values it sees, so the exported file carries one scale per domain and TensorRT needs no
Reformat. Add policies (the `add` option):
  residual (default): TensorRT's rule. Only the identity input gets a quantizer; the input coming
    straight from a conv stays float so TensorRT fuses conv + bias + Add (+ ReLU) and reads the
    identity in INT8 (TensorRT#1992). The identity joins its own tensor's domain (e.g. the block
    input that also feeds conv1), never the conv branch's. With no conv input to fuse into, both
    inputs get quantizers in one domain (an INT8 Add reformats an input at another scale); the
    ONNX pass does the same.
  shared: both inputs quantized with one quantizer (an INT8 Add without conv fusion).
"""

from __future__ import annotations

from torch import fx

from bevcc.device import device_of
from bevcc.errors import UsageError
from bevcc.ir.fx import FxIR
from bevcc.ir.union_find import UnionFind
from bevcc.passes.quantizer_unify import FX
from bevcc.passes.quantizer_unify import _fx_graph as g
from bevcc.pm.pass_base import Pass, PassResult
from bevcc.quant.calibrate import calibrate
from bevcc.quant.quantizer import TensorQuantizer
from bevcc.quant.ranges import ReplaysRanges


class QuantizerUnifyFx(ReplaysRanges, Pass, declaration=FX):
    def report(self, stats: dict) -> list[str]:
        inserted = stats.get("inserted", {})
        line = (
            f"{stats.get('quantizers_before', 0)} activation quantizers -> "
            f"{stats.get('quantizers_after', 0)} (one per scale domain); inserted on Add "
            f"inputs {inserted.get('add', 0)}, on Concat inputs {inserted.get('concat', 0)}; "
            f"recalibrated {stats.get('recalibrated', 0)}"
        )
        return [line]

    def call(self, ir: FxIR) -> PassResult:
        graph, module = ir.graph, ir.module
        modules = dict(module.named_modules())
        order = {node: i for i, node in enumerate(graph.nodes)}
        quantizer_nodes = [n for n in graph.nodes if g.is_activation_quantizer(n, modules)]
        before = len({n.target for n in quantizer_nodes})
        if not quantizer_nodes:
            return PassResult(ir, modified=False, stats={"quantizers_before": 0})
        domains = UnionFind()

        def key(node: fx.Node) -> str:
            return node.name

        for node in graph.nodes:
            moved = g.moving_inputs(node, modules)
            for source in moved or ():
                domains.union(key(source), key(node))
        inserted = {"add": 0, "concat": 0}
        wanted_edges: list[tuple[fx.Node, int | tuple, fx.Node, str]] = []
        for node in list(graph.nodes):
            sides = g.add_inputs(node, modules)
            if sides is None:
                continue
            already = [g.is_activation_quantizer(side, modules) for side in sides]
            if all(already) and self.options.add != "shared":
                # Both inputs quantized by an earlier pass (sparse_conv_quant: libspconv's Add
                # takes a range per input); each input keeps its own domain.
                continue
            targets = self._add_targets(sides, modules, order)
            if len(targets) == 2:
                domains.union(key(sides[0]), key(sides[1]))
            for index in targets:
                wanted_edges.append((node, index, sides[index], "add"))
        for node in quantizer_nodes:
            domains.union(key(node.args[0]), key(node))
        quantized_domains = {domains.find(key(n)) for n in quantizer_nodes}
        if self.options.concat_inputs:
            for node in graph.nodes:
                inputs = g.concat_inputs(node, modules)
                if inputs and domains.find(key(node)) in quantized_domains:
                    for position, source in enumerate(inputs):
                        wanted_edges.append((node, ("cat", position), source, "concat"))
        new_quantizers = []
        # New quantizers take the settings of the first one in the graph.
        template = modules[quantizer_nodes[0].target]
        for consumer, index, source, kind in wanted_edges:
            if g.is_activation_quantizer(source, modules):
                continue  # already quantized on this edge
            qnode = self._insert(ir, consumer, index, source, template, kind)
            modules[qnode.target] = module.get_submodule(qnode.target)
            new_quantizers.append(qnode)
            domains.union(key(source), key(qnode))
            inserted[kind] += 1
        all_quantizers = [n for n in graph.nodes if g.is_activation_quantizer(n, modules)]
        shared, merged = self._share(ir, all_quantizers, domains, modules)
        after = len({n.target for n in graph.nodes if g.is_activation_quantizer(n, modules)})
        changed = bool(new_quantizers or merged or after != before)
        recalibrated = 0
        if changed:
            module.delete_all_unused_submodules()
            module.recompile()  # calibration below runs the new graph
            live = set(graph.nodes)
            recalibrated = self._recalibrate(
                ir, shared | {n.target for n in new_quantizers if n in live}
            )
        return PassResult(
            ir,
            modified=changed,
            stats={
                "quantizers_before": before,
                "quantizers_after": after,
                "inserted": inserted,
                "merged_calls": merged,
                "recalibrated": recalibrated,
            },
        )

    def _add_targets(self, sides, modules, order) -> list[int]:
        """Which Add inputs get a quantizer under the policy."""
        if self.options.add == "shared":
            return [0, 1]
        convs = [g.from_conv(s, modules) for s in sides]
        if convs == [True, False]:
            return [1]
        if convs == [False, True]:
            return [0]
        if convs == [True, True]:  # the later conv fuses with the Add; quantize the other
            return [0] if order[sides[0]] < order[sides[1]] else [1]
        return [0, 1]  # no conv to fuse into: an INT8 Add needs both inputs quantized

    def _insert(self, ir, consumer, index, source, template, kind) -> fx.Node:
        """A new TensorQuantizer on the edge source -> consumer, set up like `template`."""
        name = (
            f"{consumer.name}_{kind}_input{index if isinstance(index, int) else index[1]}_quantizer"
        )
        quantizer = TensorQuantizer(
            calibrator=template.calibrator_name, percentile=template.percentile
        )
        ir.module.add_submodule(name, quantizer)
        with ir.graph.inserting_before(consumer):
            qnode = ir.graph.call_module(name, (source,))
        if isinstance(index, tuple):  # position in a Concat's list
            items = list(consumer.args[0])
            items[index[1]] = qnode
            consumer.args = (items, *consumer.args[1:])
        else:
            args = list(consumer.args)
            args[index] = qnode
            consumer.args = tuple(args)
        return qnode

    def _share(self, ir, quantizer_nodes, domains, modules):
        """Point every quantizer call in a domain at one module; merge calls on one tensor."""
        first_in_domain: dict[str, str] = {}
        by_input: dict[tuple, fx.Node] = {}
        merged = 0
        shared_targets: dict[str, set] = {}
        for node in quantizer_nodes:
            root = domains.find(node.name)
            target = first_in_domain.setdefault(root, node.target)
            node.target = target
            shared_targets.setdefault(target, set()).add(node)
            twin = by_input.get((target, node.args[0]))
            if twin is not None:  # same quantizer on the same tensor: one call serves both
                node.replace_all_uses_with(twin)
                ir.graph.erase_node(node)
                shared_targets[target].discard(node)
                merged += 1
            else:
                by_input[(target, node.args[0])] = node
        shared = {t for t, nodes in shared_targets.items() if len(nodes) > 1}
        return shared, merged

    def _recalibrate(self, ir, targets: set) -> int:
        """Shared and new quantizers get one statistic over every value they now see."""
        quantizers = {t: ir.module.get_submodule(t) for t in sorted(targets)}
        if not quantizers:
            return 0
        calib = self.context.calib if self.context is not None else None
        if calib is None:
            uncalibrated = [t for t, q in quantizers.items() if q.amax is None]
            if uncalibrated:
                raise UsageError(
                    f"quantizer_unify added quantizers ({', '.join(uncalibrated)}) "
                    "that need calibration data: give --calib DATA"
                )
            return 0
        for q in quantizers.values():
            q.amax = None  # calibrate() fills every quantizer without an amax
        names = [n.name for n in ir.graph.nodes if n.op == "placeholder"]
        calibrate(
            ir.module,
            calib,
            names,
            ir.example_inputs,
            quantizers=quantizers,
            device=device_of(self.context),
            **self.ranges_arguments(),
        )
        return len(quantizers)
