"""Shared fixtures: a built-ins-only registry, the reference model, and small ONNX files on disk."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import tomllib

from bevcc.plugins import load_plugins
from bevcc.testing import run_bevcc  # noqa: F401  (tests import it from here)

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"
# a line of BEVCC_PROGRESS=lines (bevcc/progress.py): clock, seconds since start, what runs
PROGRESS_LINE = re.compile(r"^bevcc \d\d:\d\d:\d\d \+(\d+\.\d)s (.+)$")


def repo_plugins() -> dict[str, str]:
    """This repo's plugins (plugins/*/pyproject.toml): entry-point name -> module it names."""
    found = {}
    for pyproject in sorted(PLUGINS_DIR.glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        found.update(project.get("entry-points", {}).get("bevcc", {}))
    return found


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
