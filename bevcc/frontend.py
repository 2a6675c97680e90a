"""Frontend: turn what the user gave (ONNX path, module reference, nn.Module, ...) into an IR."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bevcc.data import CalibData
from bevcc.errors import InputError
from bevcc.ir.base import IR
from bevcc.loading import call_user, is_callable_ref, load_callable


def input_kind(model) -> str:
    """The IR a model will load into, decided without loading it (to validate pipelines early)."""
    if isinstance(model, IR):
        return model.kind
    if isinstance(model, (str, os.PathLike)):
        return "onnx" if str(model).endswith(".onnx") else "fx"
    if type(model).__name__ == "ModelProto":
        return "onnx"
    return "fx"


def start_kind(model_kind: str, pipeline) -> str:
    """The IR a (parsed) pipeline starts on for a model of `model_kind`: the model's own, except
    that a PyTorch model under a pipeline whose first group is onnx(...) is captured as ONNX
    (bevcc/ir/onnx_capture.py) instead of traced: the route for models FX cannot trace."""
    first = pipeline.elements[0] if pipeline.elements else None
    if model_kind == "fx" and getattr(first, "ir", None) == "onnx":
        return "onnx"
    return model_kind


def load_ir(model, registry, calib: CalibData | None = None, example_inputs=None) -> IR:
    """Load `model` into the IR that `input_kind(model)` names: build_model, then to_ir."""
    return to_ir(build_model(model, registry), registry, calib, example_inputs)


def build_model(model, registry):
    """What `model` names, built: a file (.onnx, .pt) read into its IR, a reference's callable
    called (its nn.Module or (module, example_inputs)); anything else as given. This is the
    "load" of a compile's time: the user's code building the model, its weights and data."""
    if isinstance(model, (str, os.PathLike)):
        text = str(model)
        if text.endswith(".onnx"):
            from bevcc.ir.onnx import OnnxIR

            return OnnxIR.load(text)
        if text.endswith(".pt"):
            return _load_fx_file(Path(text), registry)
        return _build_referenced(text, registry)
    return model


def to_ir(
    model, registry, calib: CalibData | None = None, example_inputs=None, capture: str = "fx"
) -> IR:
    """A built model as an IR: an IR as it is, an ONNX ModelProto wrapped, a PyTorch module
    traced and specialized to its example inputs, or with `capture="onnx"` exported to ONNX
    (the "trace" of a compile's time)."""
    if isinstance(model, IR):
        return model
    if type(model).__name__ == "ModelProto":
        from bevcc.ir.onnx import OnnxIR

        return OnnxIR.from_model(model)
    if capture == "onnx":
        return _capture_onnx(model, calib, example_inputs)
    return _trace(model, registry, calib, example_inputs)


def _load_fx_file(path: Path, registry) -> IR:
    """A graph FxIR.save wrote (a `.pt` output, or a reproducer's input.pt), shapes recomputed
    from the example inputs it holds (node metadata does not survive pickling)."""
    from bevcc.ir.fx import FxIR

    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path")
    ir = FxIR.load(path, registry.trace_rules())
    ir.propagate_shapes()
    return ir


def _build_referenced(text: str, registry):
    if text in registry.models:
        builder = registry.models[text].obj
    elif is_callable_ref(text):
        builder = load_callable(text, "model")
    elif Path(text).exists():
        raise InputError(
            f"model {text}: bevcc reads .onnx files, .pt files bevcc wrote, or "
            "file.py:callable / package.module:callable references returning an "
            "nn.Module"
        )
    else:
        raise InputError(
            f"model '{text}' is neither a file, a registered model "
            f"({', '.join(sorted(registry.models)) or 'none'}) nor a "
            "file.py:callable or package.module:callable reference"
        )
    return _checked_build(call_user(builder, text, "model"), text)


def _checked_build(built, ref: str):
    """What a model callable returned, if compile can take it; else one error naming the callable
    and what it returned (a state_dict is left to _trace, which says how to build the module)."""
    if isinstance(built, IR) or type(built).__name__ == "ModelProto":
        return built
    import torch

    if isinstance(built, torch.nn.Module):
        return built
    if _is_pair(built, torch):
        return built
    if (
        isinstance(built, Mapping)
        and built
        and all(isinstance(v, torch.Tensor) for v in built.values())
    ):
        return built  # a state_dict
    raise InputError(f"{ref} returned {_misfit(built, 'return')}")


def _misfit(value, verb: str) -> str:
    """What `value`, which is no model, is, and what to `verb` instead: one clause."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        model = _a(value[0])
        return f"({model}, inputs): the model is {model}; {verb} (nn.Module, example_inputs)"
    what = (
        f"a {type(value).__name__} of {len(value)} items"
        if isinstance(value, (tuple, list))
        else _a(value)
    )
    return f"{what}; {verb} (nn.Module, example_inputs) or an nn.Module"


def _is_pair(value, torch) -> bool:
    """(module, example_inputs), as a tuple or a list."""
    return (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and isinstance(value[0], torch.nn.Module)
    )


def _a(value) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def _trace(obj, registry, calib: CalibData | None, example_inputs):
    from bevcc.ir.fx import FxIR

    module, inputs = _module_and_inputs(obj, calib, example_inputs)
    if inputs is None:
        return FxIR.trace(module, None, registry.trace_rules())
    return _specialized(module, tuple(inputs), registry, calib)


def _capture_onnx(obj, calib: CalibData | None, example_inputs):
    from bevcc.ir.onnx_capture import capture_onnx

    module, inputs = _module_and_inputs(obj, calib, example_inputs)
    if inputs is None:
        raise InputError(
            f"cannot capture {type(module).__name__} to ONNX without example inputs: return "
            "(module, example_inputs) from the model callable, or give --calib data"
        )
    ir = capture_onnx(module, tuple(inputs))
    if calib is not None:  # positional calibration batches follow the captured inputs
        calib.input_names = [t.name for t in ir.graph.inputs]
    return ir


def _module_and_inputs(obj, calib: CalibData | None, example_inputs):
    """The nn.Module and its example inputs (a tuple, or None when nothing gives them)."""
    import torch

    module, inputs = obj, example_inputs
    if _is_pair(obj, torch):
        module, inputs = obj[0], obj[1] if example_inputs is None else example_inputs
    if (
        isinstance(module, Mapping)
        and module
        and all(isinstance(v, torch.Tensor) for v in module.values())
    ):
        raise InputError(
            "got a state_dict (a mapping of tensors) where an nn.Module was expected; "
            "build the model, call load_state_dict on it and return the module"
        )
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"the model given is {_misfit(module, 'give')}")
    if inputs is not None and not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    if inputs is None and calib is not None:
        inputs = _inputs_from_calib(module, calib)
    return module, inputs


def _specialized(module, inputs: tuple, registry, calib: CalibData | None):
    """Every PyTorch input with known example inputs is specialized to them (bevcc/ir/specialize.py):
    non-tensor inputs and the shape values the example fixes become constants."""
    from bevcc.ir.fx import FxIR
    from bevcc.ir.specialize import specialize

    rules = registry.trace_rules()
    result = specialize(module, inputs, rules)
    ir = FxIR(result.module, result.example_inputs, rules, type(module).__name__)
    ir.fixed_input_shapes = result.fixed_input_shapes
    if calib is not None:  # positional calibration batches follow the specialized inputs
        calib.input_names = list(result.fixed_input_shapes)
    ir.propagate_shapes()
    return ir


def _inputs_from_calib(module, calib: CalibData) -> tuple:
    """The first calibration batch as forward's inputs, keyed by the names the graph's inputs get
    (fx renames a parameter that shadows a builtin: `input` is `input_1`); parameters the data
    lacks keep their defaults."""
    import inspect

    import torch
    from torch import fx

    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = [p for p in inspect.signature(module.forward).parameters.values() if p.kind in kinds]
    namer = fx.Graph()
    names = [namer.placeholder(p.name).name for p in params]
    calib.input_names = names
    batch = calib.first()
    missing = [
        n for n, p in zip(names, params, strict=True) if n not in batch and p.default is p.empty
    ]
    if missing:
        raise InputError(
            f"calibration data {calib.description} lacks input(s) "
            f"{', '.join(missing)}; it has {', '.join(batch)}; add them to the "
            "data, or return (module, example_inputs) from the model callable "
            "(non-tensor inputs such as batch_size go there)"
        )
    given = max((i + 1 for i, n in enumerate(names) if n in batch), default=0)
    return tuple(
        torch.from_numpy(batch[n]) if n in batch else p.default
        for n, p in zip(names[:given], params[:given], strict=True)
    )
