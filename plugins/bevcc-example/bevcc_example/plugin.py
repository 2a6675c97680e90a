"""The module the `bevcc` entry point names: hook implementations only."""

import bevcc


@bevcc.hookimpl
def bevcc_register_passes(registry):
    from bevcc_example.remove_identity import RemoveIdentity

    registry.add_pass(RemoveIdentity)
