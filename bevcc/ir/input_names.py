"""Names of a PyTorch model's graph inputs, shared by FX specialization and ONNX capture.

forward's positional parameters are bound to the example inputs; every tensor among them (also
inside lists, tuples and dicts) becomes one named graph input: `param`, `param_0` for a sequence
element, the key itself for a dict entry, so calibration data keyed by those names fits either
capture.
"""

from __future__ import annotations

import inspect
import keyword
import re

import torch
from torch.utils import _pytree as pytree

from bevcc.errors import InputError


def bind_inputs(module: torch.nn.Module, inputs: tuple) -> list[tuple[str, object]]:
    """(parameter name, example value) per positional argument forward receives."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(inspect.signature(module.forward).parameters.values())
    positional = [p for p in params if p.kind in kinds]
    varargs = next((p.name for p in params if p.kind == inspect.Parameter.VAR_POSITIONAL), None)
    where = f"{type(module).__name__}.forward"
    if len(inputs) > len(positional) and varargs is None:
        raise InputError(
            f"{where} takes {len(positional)} inputs "
            f"({', '.join(p.name for p in positional)}), but {len(inputs)} example "
            "inputs were given; return (module, example_inputs) with one per input"
        )
    missing = [p.name for p in positional[len(inputs) :] if p.default is inspect.Parameter.empty]
    if missing:
        raise InputError(
            f"{where} needs {', '.join(missing)} beyond the {len(inputs)} example "
            "input(s) given; return (module, example_inputs) with every input of "
            "forward, non-tensor ones (e.g. batch_size) included"
        )
    extra = [f"{varargs}_{i}" for i in range(len(inputs) - len(positional))]
    names = [p.name for p in positional] + extra
    return list(zip(names, inputs, strict=True))


def leaf_name(name: str, path) -> str:
    """`param`, `param_0` for a sequence element, the key itself for a dict entry."""
    for key in path:
        if isinstance(key, pytree.MappingKey):
            name = str(key.key)
        elif isinstance(key, pytree.SequenceKey):
            name = f"{name}_{key.idx}"
        elif isinstance(key, pytree.GetAttrKey):
            name = key.name
    name = re.sub(r"\W", "_", name)
    return f"_{name}" if not name.isidentifier() or keyword.iskeyword(name) else name


def unique_name(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate
