"""The `qdq_insert` pass: one module per IR it runs on, private helpers beside them."""
