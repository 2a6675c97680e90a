"""fx `dce`: remove nodes whose results nobody uses, and the submodules only they called."""

from bevcc.ir.fx import FxIR
from bevcc.pm.pass_base import Pass, PassResult


class DeadCodeElimination(Pass):
    name = "dce"
    summary = "Remove FX nodes whose values are never used, and submodules left without callers."
    ir = "fx"

    def call(self, ir: FxIR) -> PassResult:
        before = len(ir.graph.nodes)
        # fx treats calls into modules as possibly impure and keeps them; perception models'
        # modules are pure functions of their inputs, so an unused call_module can go too.
        changed = ir.graph.eliminate_dead_code(is_impure_node=_is_impure)
        removed = before - len(ir.graph.nodes)
        if changed:
            ir.module.delete_all_unused_submodules()
            ir.module.recompile()
        return PassResult(ir, modified=bool(changed), stats={"removed_nodes": removed})


def _is_impure(node) -> bool:
    return node.op in ("placeholder", "output") or (node.op != "call_module" and node.is_impure())
