"""`bevcc lint`: check any Q/DQ ONNX file against ../specs/tensorrt-qdq.md."""
