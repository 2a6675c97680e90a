"""`bevcc lint`: check any Q/DQ ONNX file against TensorRT's Q/DQ rules (docs/tensorrt_qdq.md)."""
