"""onnx `topk_shrink`: `TopK(x, K=N)` sorted, then `Slice[0:k]` on its axis -> `TopK(x, K=k)`.

PyTorch detection heads pick proposals with `heatmap.view(B, -1).argsort(descending=True)[..., :k]`
(mmdet3d's TransFusionHead). Exporters write the argsort as a TopK over the whole axis (K = classes
x H x W: 324000 at BEVFusion's 180 x 180 grid) and the indexing as a Slice; TensorRT accepts
K <= 3840 only (bevcc/trt/limits.py), so the engine build fails. A sorted TopK's first k results
are the TopK of k: when every reader of the TopK's outputs is a Slice of its axis from 0 with step
1 to the same constant end, K becomes that end and the Slices go.
"""

import numpy as np
import onnx_graphsurgeon as gs

from bevcc.ir.onnx import OnnxIR
from bevcc.passes.topk_shrink import ONNX
from bevcc.pm.pass_base import Pass, PassResult


class TopkShrink(Pass, declaration=ONNX):
    def call(self, ir: OnnxIR) -> PassResult:
        graph = ir.graph
        shrunk = []
        for node in list(graph.nodes):
            if node.op == "TopK" and _shrink(node, graph):
                shrunk.append(node.name)
        if shrunk:
            graph.cleanup()
        return PassResult(ir, modified=bool(shrunk), stats={"shrunk": shrunk})

    def report(self, stats: dict) -> list[str]:
        names = stats.get("shrunk", [])
        return [
            f"shrunk {len(names)} TopK to the k their Slice reads"
            + (f": {', '.join(names)}" if names else "")
        ]


def _shrink(node: gs.Node, graph) -> bool:
    if not node.attrs.get("sorted", 1) or not isinstance(node.inputs[1], gs.Constant):
        return False
    rank = len(node.inputs[0].shape or ())
    axis = node.attrs.get("axis", -1) % rank if rank else None
    count = int(np.asarray(node.inputs[1].values).reshape(-1)[0])
    readers = [(out, reader) for out in node.outputs for reader in out.outputs]
    if axis is None or not readers or any(out in graph.outputs for out in node.outputs):
        return False
    ends = {_leading_slice_end(reader, axis, rank) for _, reader in readers}
    if len(ends) != 1 or None in ends:
        return False
    (end,) = ends
    if end >= count:
        return False
    node.inputs[1] = gs.Constant(f"{node.name}_k", np.asarray([end], np.int64))
    for out, reader in readers:
        sliced = reader.outputs[0]
        for consumer in list(sliced.outputs):
            consumer.inputs = [out if t is sliced else t for t in consumer.inputs]
        if sliced in graph.outputs:  # keep the graph output's name: rename the TopK output
            graph.outputs[graph.outputs.index(sliced)] = out
        reader.outputs.clear()
    for out in node.outputs:
        if out.shape is not None and len(out.shape) == rank:
            out.shape = [end if i == axis else d for i, d in enumerate(out.shape)]
    return True


def _leading_slice_end(node: gs.Node, axis: int, rank: int):
    """The constant end of a Slice of `axis` from 0 with step 1, or None for any other reader."""
    if node.op != "Slice" or len(node.inputs) < 4:
        return None
    values = [
        np.asarray(t.values).reshape(-1) if isinstance(t, gs.Constant) else None
        for t in node.inputs[1:5]
    ]
    if any(v is None or v.size != 1 for v in values[:3]):
        return None
    starts, ends, axes = values[:3]
    steps = values[3] if len(values) > 3 and values[3] is not None else np.ones(1)
    if int(starts[0]) != 0 or int(axes[0]) % rank != axis or int(steps[0]) != 1:
        return None
    return int(ends[0]) if int(ends[0]) > 0 else None
