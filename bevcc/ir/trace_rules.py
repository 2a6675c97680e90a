"""What FX tracing must treat specially, as plugins declare it: leaf modules, container rules,
leaf functions.

- leaf module types are called as one opaque `call_module` node (spconv convs, custom CUDA ops);
- a container rule replaces a module's forward while tracing, for containers whose forward
  branches on the runtime type of its input (spconv's SparseSequential checks
  `isinstance(x, SparseConvTensor)`, which a Proxy never is); the children it calls are traced
  as usual, so they keep their own names in the graph;
- leaf functions (or classes) are recorded as one `call_function` node instead of being run on
  proxies (e.g. the SparseConvTensor constructor). As with `torch.fx.wrap`, this works where the
  forward's module calls them by a global name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class TraceRules:
    leaf_types: tuple[type, ...] = ()
    container_rules: tuple[tuple[type, Callable], ...] = ()
    leaf_functions: tuple[Callable, ...] = ()

    @classmethod
    def coerce(cls, rules: TraceRules | Iterable[type] | None) -> TraceRules:
        """Accept a TraceRules or, as before rules existed, a plain iterable of leaf types."""
        if rules is None:
            return cls()
        if isinstance(rules, TraceRules):
            return rules
        return cls(leaf_types=tuple(rules))

    def container_rule(self, module) -> Callable | None:
        for module_type, rule in self.container_rules:
            if isinstance(module, module_type):
                return rule
        return None
