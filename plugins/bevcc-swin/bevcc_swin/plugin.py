"""The module the `bevcc` entry point names: hook implementations only (imports stay lazy)."""

import bevcc


@bevcc.hookimpl
def bevcc_register_models(registry):
    from bevcc_swin.reference import swin_tiny_camera

    registry.add_model("swin_tiny_camera", swin_tiny_camera)


@bevcc.hookimpl
def bevcc_register_leaf_modules(registry):
    from bevcc_swin.windows import shifted_window_mask

    registry.add_leaf_function(shifted_window_mask)


@bevcc.hookimpl
def bevcc_register_passes(registry):
    from bevcc_swin.attention_qdq import AttentionQdq
    from bevcc_swin.mha_check import MhaCheck

    registry.add_pass(AttentionQdq)
    registry.add_pass(MhaCheck)
