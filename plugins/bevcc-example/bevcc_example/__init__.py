"""Example bevcc plugin: one ONNX pass, registered through the `bevcc` entry point."""
