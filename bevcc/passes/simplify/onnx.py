"""onnx `simplify`: fold what the file's input shapes fix, so calibration sees a static graph.

A raw export recomputes its shapes at run time; onnxruntime runs that arithmetic on every
calibration batch, and shape inference cannot size the tensors it feeds, so calibration reads
them one run at a time (mmdet's Swin: 68 runs over the data instead of 2). Each round infers
static shapes with data propagation (bevcc.ir.onnx_static), lends them to onnx-graphsurgeon's
fold (onnxruntime evaluates every node whose inputs are then constant; Shape of a static tensor
becomes its dims), and drops what no output reads any more. It stops when a round folds nothing.

Only what the file states is used: a dynamic dimension stays dynamic with everything computed
from it. Nodes in NEVER_FOLDED (Q/DQ, random ops) and nodes of other domains (plugins) are never
evaluated, so a Q/DQ file keeps every pair, its weight pairs included.
"""

from __future__ import annotations

import contextlib
import logging

import onnx_graphsurgeon as gs
from onnx_graphsurgeon.logger import G_LOGGER

from bevcc.ir.onnx import OnnxIR
from bevcc.ir.onnx_static import NEVER_FOLDED, inferred_shapes, is_static
from bevcc.passes.simplify import ONNX
from bevcc.pm.pass_base import Pass, PassResult

log = logging.getLogger(__name__)
_DEFAULT_DOMAINS = ("", "ai.onnx")
_ORT_DEFAULT_SEVERITY = 2  # onnxruntime's own default (warnings)


class Simplify(Pass, declaration=ONNX):
    def report(self, stats: dict) -> list[str]:
        line = (
            f"{stats['nodes_before']} -> {stats['nodes_after']} nodes, "
            f"{stats['folded']} tensors folded to constants in {stats['rounds']} round(s)"
        )
        if stats.get("unevaluated"):
            line += f"; onnxruntime could not evaluate a constant subgraph: {stats['unevaluated']}"
        return [line]

    def call(self, ir: OnnxIR) -> PassResult:
        graph = ir.graph
        before = len(graph.nodes)
        constants = _constant_names(graph)
        rounds, unevaluated = 0, None
        for _ in range(self.options.max_rounds):
            rounds += 1
            count, known = len(graph.nodes), len(_constant_names(graph))
            error = self._fold_round(ir)
            unevaluated = unevaluated or error
            if len(graph.nodes) == count and len(_constant_names(graph)) == known:
                break
        folded = len(_constant_names(graph) - constants)
        stats = {
            "nodes_before": before,
            "nodes_after": len(graph.nodes),
            "folded": folded,
            "rounds": rounds,
            "unevaluated": unevaluated,
        }
        return PassResult(ir, modified=bool(folded or len(graph.nodes) != before), stats=stats)

    def _fold_round(self, ir: OnnxIR) -> str | None:
        """One round; the first line of onnxruntime's error when it could not evaluate the
        constant part in one piece (then it is evaluated node by node, and what fails stays
        computed), else None."""
        graph = ir.graph
        # shapes are inferred only where a Shape/Size could use them: a file without any
        # (an FX export, the onnx zoo) is folded without exporting it for the inference
        lent = []
        if any(node.op in ("Shape", "Size") for node in graph.nodes):
            lent = _lend_shapes(graph, inferred_shapes(ir.to_model()))
        error = None
        try:
            with _quiet():
                try:
                    graph.fold_constants(**self._fold_options(), error_ok=False)
                except Exception as exc:  # noqa: BLE001 - one bad node must not stop the rest
                    error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                    graph.fold_constants(
                        **self._fold_options(), partitioning="recursive", error_ok=True
                    )
        finally:
            for tensor, shape in lent:  # what the file declared, not what inference found
                if isinstance(tensor, gs.Variable):
                    tensor.shape = shape
        graph.cleanup()
        return error

    def _fold_options(self) -> dict:
        return {
            "fold_shapes": True,
            "size_threshold": int(self.options.max_constant_mb * (1 << 20)),
            "should_exclude_node": _never_folded,
        }


def _never_folded(node: gs.Node) -> bool:
    return node.op in NEVER_FOLDED or (node.domain or "") not in _DEFAULT_DOMAINS


def _constant_names(graph: gs.Graph) -> set[str]:
    return {name for name, t in graph.tensors().items() if isinstance(t, gs.Constant)}


def _lend_shapes(graph: gs.Graph, shapes: dict) -> list:
    """Give each variable whose shape the file leaves open what inference found (its static
    dimensions: a Shape -> Gather of one of them folds even beside a dynamic batch); returns
    (tensor, declared shape) to put back after the fold."""
    lent = []
    for name, tensor in graph.tensors().items():
        if not isinstance(tensor, gs.Variable) or name not in shapes:
            continue
        declared, found = tensor.shape, shapes[name]
        if is_static(declared) or _static_dims(found) <= _static_dims(declared):
            continue
        tensor.shape = list(found)
        lent.append((tensor, declared))
    return lent


def _static_dims(shape) -> int:
    return sum(isinstance(d, int) and d >= 0 for d in shape or ())


@contextlib.contextmanager
def _quiet():
    """onnx-graphsurgeon logs each fold, onnxruntime warns about the graph optimizations it
    cannot apply to the constant subgraph: neither is the user's business."""
    import onnxruntime as ort

    severity = G_LOGGER.severity
    G_LOGGER.severity = G_LOGGER.ERROR + 10  # above its errors: a failure comes back raised
    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        G_LOGGER.severity = severity
        ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)
