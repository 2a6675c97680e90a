"""Shared fixtures: the Swin model compiled once by the core pipeline and once with this plugin."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from bevcc_swin.reference import calibration_batches, swin_tiny_camera

import bevcc
from bevcc.testing import plugin_registry

CORE = "fx(bn_fold,qdq_insert,quantizer_unify)"
PLUGIN = "fx(bn_fold,qdq_insert,quantizer_unify,attention_qdq)"


@pytest.fixture(scope="session")
def registry():
    """Built-ins plus this plugin, loaded through its installed entry point."""
    return plugin_registry("swin")  # fails, saying so, when the plugin is not installed


@pytest.fixture(scope="session")
def swin():
    return swin_tiny_camera()


@pytest.fixture(scope="session")
def compiled(tmp_path_factory, registry, swin):
    """name -> (fake-quant FX result, exported Q/DQ ONNX model) for both pipelines."""
    out = {}
    for name, pipeline in (("core", CORE), ("plugin", PLUGIN)):
        result = bevcc.compile(
            swin, pipeline=pipeline, calib=calibration_batches(), registry=registry
        )
        path = tmp_path_factory.mktemp(name) / f"swin.{name}.onnx"
        bevcc.compile(result.ir, pipeline="export,onnx(check)", output=str(path), registry=registry)
        out[name] = (result, onnx.load(path), path)
    return out


@pytest.fixture(scope="session")
def eval_images():
    """Held-out images (a different seed from calibration)."""
    return [torch.from_numpy(b["x"]) for b in calibration_batches(8, seed=7)]


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    return float(10 * np.log10((reference**2).sum() / ((reference - test) ** 2).sum()))
