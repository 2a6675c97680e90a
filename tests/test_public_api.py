"""bevcc's public API (bevcc.PUBLIC_MODULES, each with its `__all__`) is what this repo's plugins
use, and all of it exists: a plugin that needs something internal makes it public first."""

import ast
import importlib
import re
from pathlib import Path

import pytest

from bevcc import PUBLIC_MODULES
from bevcc.testing import private_imports, public_names

ROOT = Path(__file__).resolve().parents[1]


# the plugins' sources, not what a local `pip install` left beside them (build/, *.egg-info)
def _is_source(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return not {"__pycache__", "build"} & set(parts) and not any(
        part.endswith(".egg-info") for part in parts
    )


PLUGIN_FILES = sorted(p for p in (ROOT / "plugins").glob("*/**/*.py") if _is_source(p))


def test_the_plugins_import_only_the_public_api():
    assert len(PLUGIN_FILES) > 60  # the glob found the plugins' packages and tests
    problems = [
        line
        for path in PLUGIN_FILES
        for line in private_imports(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert problems == []


def test_the_docs_python_examples_import_only_the_public_api():
    """What the docs teach plugin authors to write (blocks that are fragments are skipped)."""
    checked, problems = 0, []
    for doc in [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md")), *ROOT.glob("plugins/*/*.md")]:
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), re.DOTALL)):
            try:
                ast.parse(block)
            except SyntaxError:
                continue
            checked += 1
            problems += private_imports(block, f"{doc.relative_to(ROOT)} (python block {i + 1})")
    assert checked > 10 and problems == []


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_resolves(module_name):
    module = importlib.import_module(module_name)
    names = public_names(module_name)
    assert list(names) == module.__all__  # what the checker reads is what Python sees
    assert names and len(set(names)) == len(names)
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == []


SOURCE = """\
import bevcc
import bevcc.sparse.tracing
from bevcc import Pass, compile
from bevcc import testing
from bevcc.ir import fx
from bevcc.ir.fx import FxIR, _ScopedTracer
from bevcc.passes.check.onnx import Check
from bevcc_swin.model import SwinBackbone  # another package, not bevcc

bevcc.plugins.get_registry()
bevcc.plugins.default_plugins()
bevcc.registry_runtime.Entry
bevcc.compile("tiny_cnn").ir.dump()
testing.run_bevcc("passes")
fx.FxIR.trace
"""


def test_the_checker_names_each_reach_past_the_public_api():
    internal = "is internal; import from a public module (bevcc.PUBLIC_MODULES), or make what "
    internal += "you need public there"
    unexported = "(internal); use a public name"
    assert private_imports(SOURCE, "mine.py") == [
        f"mine.py:2: bevcc.sparse.tracing {internal}",
        f"mine.py:6: _ScopedTracer is not in bevcc.ir.fx.__all__ {unexported}",
        f"mine.py:7: bevcc.passes.check.onnx {internal}",
        f"mine.py:11: default_plugins is not in bevcc.plugins.__all__ {unexported}",
        f"mine.py:12: registry_runtime is not in bevcc.__all__ {unexported}",
    ]


def test_the_checker_passes_public_use():
    assert private_imports("import bevcc\nfrom bevcc.errors import InputError\nbevcc.Pass\n") == []
