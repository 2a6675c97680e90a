"""Shared fixtures: a built-ins-only registry, the reference model, and small ONNX files on disk."""

from __future__ import annotations

import warnings

import pytest

from bevcc.plugins import load_plugins
from bevcc.testing import run_bevcc  # noqa: F401  (tests import it from here)


@pytest.fixture
def registry():
    """A fresh registry holding only the built-ins (installed plugins do not leak into tests)."""
    return load_plugins(autoload=False).registry


@pytest.fixture
def tiny():
    from bevcc.reference.tiny_cnn import tiny_cnn

    return tiny_cnn()


@pytest.fixture
def tiny_onnx(tmp_path, tiny):
    """tiny_cnn exported to ONNX (BN folded by the exporter), as a file."""
    import torch

    path = tmp_path / "tiny.onnx"
    model, inputs = tiny
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            inputs,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["output"],
        )
    return path
