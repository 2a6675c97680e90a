"""A model callable that returns the wrong thing is told what it returned, in one line naming the
callable: `(None, inputs)` is "the model is None", not "model is a tuple"."""

from __future__ import annotations

import pytest

from bevcc.testing import NO_PLUGINS
from tests.conftest import run_bevcc

HOW = "return (nn.Module, example_inputs)"
BUILDS = {
    "None for the model": (
        "return None, (torch.ones(1, 3),)",
        f"build.py:build returned (None, inputs): the model is None; {HOW}",
    ),
    "a dict for the model": (
        "return {'net': nn.Linear(3, 2)}, (torch.ones(1, 3),)",
        f"build.py:build returned (a dict, inputs): the model is a dict; {HOW}",
    ),
    "three items": (
        "return nn.Linear(3, 2), (torch.ones(1, 3),), 'extra'",
        f"build.py:build returned a tuple of 3 items; {HOW} or an nn.Module",
    ),
    "nothing": (
        "pass",
        f"build.py:build returned None; {HOW} or an nn.Module",
    ),
}


@pytest.mark.parametrize("case", list(BUILDS))
def test_a_builder_returning_no_module_says_what_it_returned(tmp_path, case):
    body, message = BUILDS[case]
    (tmp_path / "build.py").write_text(
        f"import torch\nfrom torch import nn\n\n\ndef build():\n    {body}\n"
    )
    proc = run_bevcc("compile", "build.py:build", "-o", "out.onnx", cwd=tmp_path,
                     env_extra=NO_PLUGINS)  # fmt: skip
    assert (proc.returncode, proc.stderr) == (1, f"bevcc: error: {message}\n")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["build.py"]


def test_a_builder_returning_module_and_inputs_still_compiles(tmp_path):
    (tmp_path / "build.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "def build():\n    return nn.Linear(3, 2), (torch.ones(1, 3),)\n"
    )
    proc = run_bevcc("compile", "build.py:build", "-o", "out.onnx", cwd=tmp_path,
                     env_extra=NO_PLUGINS)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.onnx").is_file()
