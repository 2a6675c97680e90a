"""Stable topological order of ONNX graph nodes in O(n log n)."""

from __future__ import annotations

import heapq

import onnx_graphsurgeon as gs

from bevcc.ir.base import IRInvalid


def stable_toposort(graph: gs.Graph) -> list[gs.Node]:
    """Kahn's algorithm; among ready nodes the one listed first in the graph goes first.

    Ties broken by original position keep an already sorted graph in its order, which keeps
    dumps and saved files stable across passes that only append nodes.
    """
    nodes = list(graph.nodes)
    index = {id(node): i for i, node in enumerate(nodes)}
    producer: dict[int, int] = {}
    for i, node in enumerate(nodes):
        for out in node.outputs:
            producer[id(out)] = i
    consumers: list[list[int]] = [[] for _ in nodes]
    pending = [0] * len(nodes)
    for i, node in enumerate(nodes):
        for tensor in _inputs_including_subgraphs(node):
            p = producer.get(id(tensor))
            if p is not None and p != i:
                consumers[p].append(i)
                pending[i] += 1
    ready = [i for i, count in enumerate(pending) if count == 0]
    heapq.heapify(ready)
    order: list[gs.Node] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for c in consumers[i]:
            pending[c] -= 1
            if pending[c] == 0:
                heapq.heappush(ready, c)
    if len(order) != len(nodes):
        stuck = next(n for n in nodes if pending[index[id(n)]] > 0)
        raise IRInvalid(f"onnx graph has a cycle through node '{stuck.name}' ({stuck.op})")
    return order


def _inputs_including_subgraphs(node: gs.Node):
    """A node's inputs plus outer-scope tensors its subgraphs (If/Loop bodies) read."""
    yield from node.inputs
    for value in node.attrs.values():
        if isinstance(value, gs.Graph):
            local = {id(t) for n in value.nodes for t in n.outputs} | {id(t) for t in value.inputs}
            for inner in value.nodes:
                for tensor in _inputs_including_subgraphs(inner):
                    if id(tensor) not in local:
                        yield tensor
