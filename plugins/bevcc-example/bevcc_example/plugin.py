"""The module the `bevcc` entry point names: hook implementations only.

Every command loads plugins, `bevcc passes` and `--help` included, so this imports nothing heavy:
the pass is declared (PassInfo) and its module, which imports onnx, is imported when a pipeline
runs it.
"""

import bevcc
from bevcc.pass_info import PassInfo
from bevcc_example.options import RemoveIdentityOptions

REMOVE_IDENTITY = PassInfo(
    name="remove_identity",
    ir="onnx",
    impl="bevcc_example.remove_identity:RemoveIdentity",
    options=RemoveIdentityOptions,
    summary="Bypass ONNX Identity nodes: consumers read the Identity's input directly.",
)


@bevcc.hookimpl
def bevcc_register_passes(registry):
    registry.add_pass(REMOVE_IDENTITY)
