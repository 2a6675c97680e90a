"""onnx `remove_identity`: bypass Identity nodes, which exporters leave behind and which block
TensorRT's Q/DQ fusion when they sit between a DequantizeLinear and its consumer."""

import bevcc
from bevcc.ir.onnx import stable_toposort
from bevcc_example.plugin import REMOVE_IDENTITY


# Name, IR, summary and options come from the declaration the plugin registers: written once.
class RemoveIdentity(bevcc.Pass, declaration=REMOVE_IDENTITY):
    def call(self, ir):
        graph = ir.graph
        outputs = {id(t) for t in graph.outputs}
        interface = outputs | {id(t) for t in graph.inputs}
        removed = kept = 0
        # Topological order: a chain of Identities collapses front to back, whatever the file order.
        for node in stable_toposort(graph):  # one visit per node; rewiring touches its consumers
            if node.op != "Identity":
                continue
            source, result = node.inputs[0], node.outputs[0]
            if id(result) in outputs:
                if self.options.keep_outputs or id(source) in interface:
                    kept += 1
                    continue
                # The source takes over the output's name and type: the interface stays the same.
                source.name, source.dtype, source.shape = result.name, result.dtype, result.shape
                result.name = f"{result.name}.removed"
                graph.outputs = [source if t is result else t for t in graph.outputs]
                outputs.add(id(source))
                interface.add(id(source))
            for consumer in list(result.outputs):
                for index, tensor in enumerate(consumer.inputs):
                    if tensor is result:
                        consumer.inputs[index] = source
            node.outputs.clear()
            node.inputs.clear()
            removed += 1
        if removed:
            graph.nodes = [n for n in graph.nodes if n.op != "Identity" or n.outputs]
        return bevcc.PassResult(
            ir, modified=removed > 0, stats={"removed": removed, "kept_as_output": kept}
        )
