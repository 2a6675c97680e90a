"""The `export_libspconv` pass: one module per IR it runs on, private helpers beside them."""
