"""The `dce` pass: one module per IR it runs on, private helpers beside them.

Declared here for `bevcc passes` and pipeline checks, which import none of the modules:
a module is imported when a pipeline runs its pass, and its class reads its name, summary
and options from the declaration (`declaration=` on the class): they are written once, here.
"""

from bevcc.pass_info import PassInfo

FX = PassInfo(
    name="dce",
    ir="fx",
    impl="bevcc.passes.dce.fx:DeadCodeElimination",
    summary=("Remove FX nodes whose values are never used, and submodules left without callers."),
)
PASSES = (FX,)
