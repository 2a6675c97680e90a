"""spconv 2.x support (optional extra `bevcc[spconv]`): tracing rules, the CPU kernel fix, and the
module that carries a BN-folded sparse conv's bias on CPU. Nothing here imports spconv at import
time; `register(registry)` does, when the built-in plugin loads and spconv is installed.
"""
