"""Does code import only bevcc's public API? The modules in bevcc.PUBLIC_MODULES, and from each
only the names in its `__all__`. Read from the source (ast): nothing is imported or run, so a
plugin's whole tree can be checked in a test without its dependencies."""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from bevcc.public import PUBLIC_MODULES


@functools.cache
def public_names(module: str) -> tuple[str, ...]:
    """The `__all__` of public `module`, read from its source; it must be a literal list."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"public module {module} cannot be found")
    for node in ast.parse(Path(spec.origin).read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    raise ValueError(f"public module {module} has no literal __all__ = [...]")


def private_imports(source: str, filename: str = "<source>") -> list[str]:
    """Every place `source` reaches past the public API, as `filename:line: what; fix` lines:
    `import bevcc.x` or `from bevcc.x import y` of a module not in bevcc.PUBLIC_MODULES, a name
    not in a public module's `__all__`, and attribute access such as `bevcc.x.y` on an imported
    bevcc module."""
    problems: list[tuple[int, str]] = []
    bound: dict[str, str] = {}  # local name -> the bevcc module it refers to

    def report(node: ast.AST, what: str) -> None:
        problems.append((node.lineno, what))

    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _is_bevcc(alias.name):
                    continue
                if alias.name not in PUBLIC_MODULES:
                    report(node, _internal_module(alias.name))
                elif alias.asname:
                    bound[alias.asname] = alias.name
                else:  # `import bevcc.x` binds `bevcc`; its attributes are checked below
                    bound[alias.name.partition(".")[0]] = "bevcc"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_bevcc(node.module):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in PUBLIC_MODULES:  # `from bevcc import testing`
                    bound[alias.asname or alias.name] = submodule
                elif node.module not in PUBLIC_MODULES:
                    report(node, _internal_module(node.module))
                    break
                elif alias.name != "*" and alias.name not in public_names(node.module):
                    report(node, _not_exported(node.module, alias.name))
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):  # each chain once, from its outermost attribute
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            problem = _attribute_problem(node, bound)
            if problem:
                report(node, problem)
    return [f"{filename}:{line}: {what}" for line, what in sorted(problems)]


def _is_bevcc(name: str | None) -> bool:
    return name == "bevcc" or (name or "").startswith("bevcc.")


def _internal_module(module: str) -> str:
    return (
        f"{module} is internal; import from a public module (bevcc.PUBLIC_MODULES), or make "
        "what you need public there"
    )


def _not_exported(module: str, name: str) -> str:
    return f"{name} is not in {module}.__all__ (internal); use a public name"


def _attribute_problem(node: ast.Attribute, bound: dict[str, str]) -> str | None:
    """For the outermost attribute of a chain such as `bevcc.plugins.get_registry`."""
    chain = []
    value: ast.expr = node
    while isinstance(value, ast.Attribute):
        chain.append(value.attr)
        value = value.value
    if not (isinstance(value, ast.Name) and value.id in bound):
        return None
    module = bound[value.id]
    for attr in reversed(chain):
        if f"{module}.{attr}" in PUBLIC_MODULES:
            module = f"{module}.{attr}"
        elif attr.startswith("__") and attr.endswith("__"):
            return None  # module metadata (__version__, __file__)
        elif attr in public_names(module):
            return None  # past a public name, attributes are that object's own
        else:
            return _not_exported(module, attr)
    return None
