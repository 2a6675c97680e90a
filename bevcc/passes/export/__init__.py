"""The `export` pass: one module per IR it runs on, private helpers beside them."""
