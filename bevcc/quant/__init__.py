"""Quantization building blocks: the fake-quant TensorQuantizer, calibrators, quant config,
quantized layer classes and the calibration driver. Used by the qdq_insert passes; importable
by users for QAT (the calibrated model is an ordinary nn.Module)."""
