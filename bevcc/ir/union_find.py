"""Union-find over hashable names: the grouping behind scale domains and sensitivity units."""

from __future__ import annotations


class UnionFind:
    """Disjoint sets with path compression; the smallest name is each set's root, so results
    do not depend on the order unions were made in."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        root = x
        while self.parent.setdefault(root, root) != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # deterministic roots
