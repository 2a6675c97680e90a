"""How a strongly typed file states its intent, for `bevcc lint` to check it against: metadata
keys the strong_typing pass writes.

FLOAT_PRECISION_KEY: the precision float layers are declared to compute in ("fp16").
FP32_NODES_KEY: JSON {node name: reason} of the layers that stay fp32 on purpose.
"""

__all__ = ["FLOAT_PRECISION_KEY", "FP32_NODES_KEY"]

FLOAT_PRECISION_KEY = "bevcc.float_precision"
FP32_NODES_KEY = "bevcc.fp32_nodes"
