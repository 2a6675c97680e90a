"""onnx `cleanup`: drop nodes and tensors that do not reach a graph output."""

from bevcc.ir.onnx import OnnxIR
from bevcc.passes.cleanup import ONNX
from bevcc.pm.pass_base import Pass, PassResult


class Cleanup(Pass, declaration=ONNX):
    def call(self, ir: OnnxIR) -> PassResult:
        graph = ir.graph
        nodes, inputs = len(graph.nodes), len(graph.inputs)
        graph.cleanup(remove_unused_graph_inputs=self.options.remove_unused_inputs)
        removed_nodes = nodes - len(graph.nodes)
        removed_inputs = inputs - len(graph.inputs)
        # Initializers that lost their last reader vanish with their nodes: counted by fingerprint.
        return PassResult(
            ir,
            modified=bool(removed_nodes or removed_inputs),
            stats={"removed_nodes": removed_nodes, "removed_inputs": removed_inputs},
        )
