"""bevcc-swin: a Swin-Transformer camera backbone for bevcc, and the attention Q/DQ it needs."""
