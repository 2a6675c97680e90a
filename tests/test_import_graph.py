"""The core's shape, checked on the source: its import graph is a DAG, and outside bevcc/passes/
no core module names a built-in pass (docs/architecture.md states both rules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "bevcc"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _core_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in CORE.rglob("*.py") if "__pycache__" not in p.parts}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The bevcc modules `path` imports anywhere in its code (lazy imports inside functions
    count too: a cycle through a function-level import is still a cycle of concepts)."""
    found = set()
    package = (
        _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    )
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1]
                    + ([base] if base else [])
                )
            # `from pkg import sub` depends on the submodule, `from pkg import name` on pkg
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name.startswith("bevcc"):
                found.add(name)
    found.discard(_module_name(path))
    return found


def _package_of(module: str) -> str:
    """The unit the DAG is checked on: bevcc's subpackages, and each top-level core module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if state.get(nxt) is None:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if state.get(node) is None:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_module_import_graph_is_a_dag():
    modules = _core_modules()
    edges = {name: _imports(path, modules) for name, path in modules.items()}
    assert _find_cycle(edges) is None


def test_the_cycle_finder_finds_a_cycle():  # the check above could not fail otherwise
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def _builtin_pass_names() -> set[str]:
    from bevcc.plugins import load_plugins

    registry = load_plugins(autoload=False).registry
    return {entry.name for entry in registry.entries()}


def _literals_and_identifiers(path: Path) -> list[tuple[int, str]]:
    """Every string literal (not docstrings) and identifier of a module, with its line."""
    tree = ast.parse(path.read_text())
    # docstrings: of modules, classes and functions, and the string under an attribute
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.append((node.lineno, node.name))
    return found


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for p in CORE.rglob("*.py")
        if "passes" not in p.relative_to(CORE).parts[:1] and "__pycache__" not in p.parts
    ),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_core_module_names_a_builtin_pass(path):
    import re

    names = _builtin_pass_names()
    word = re.compile(r"\b(" + "|".join(sorted(map(re.escape, names))) + r")\b")
    hits = [
        f"{path.name}:{line}: {text!r}"
        for line, text in _literals_and_identifiers(path)
        if word.search(text) and not _generic(text)
    ]
    assert hits == []


def _generic(text: str) -> bool:
    """Words that are pass names and also plain English or Python (check, export, cleanup) count
    only where they stand as a pipeline word: `fx(check)`, `,export,`."""
    import re

    generic = {"check", "export", "cleanup", "dce"}
    pipeline_use = re.compile(r"[(,]\s*(" + "|".join(generic) + r")\s*[,){]")
    words = set(re.findall(r"\w+", text))
    specific = words & (_builtin_pass_names() - generic)
    return not specific and not pipeline_use.search(text)
