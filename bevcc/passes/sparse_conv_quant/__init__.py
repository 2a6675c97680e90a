"""The `sparse_conv_quant` pass: one module per IR it runs on, private helpers beside them."""
