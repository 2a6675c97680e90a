"""The `quantizer_unify` pass: one module per IR it runs on, private helpers beside them."""
