"""Capture a PyTorch model as ONNX, for models symbolic tracing cannot take.

torch.fx traces with symbolic values, so code that computes with shapes the way perception code
does (`d.view(B * N, *d.shape[2:])` in mmdet3d's DepthLSSTransform, `local_max[:, :, 1:-1] = ...`
in TransFusionHead, mmdet's SwinTransformer padding windows by `if pad_r > 0`) stops it. The
TorchScript exporter runs forward on the example inputs instead, so every shape is a number and
item assignment is recorded as the copy it is; what it writes is the graph bevcc's ONNX passes
rewrite and calibrate. Why this route and not torch.export, with the measurements:
docs/capture.md.

Inputs and outputs are named as FX specialization names them (bevcc/ir/input_names.py): the
forward parameter, `param_0` for a list element, the key of a dict entry; outputs by their dict
keys, `output` or `output_i` else. Non-tensor inputs (a batch size, a metas dict of numbers) are
constants of the graph. The caller's module is not touched: the export runs on a copy.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings

import torch
from torch.utils import _pytree as pytree

from bevcc.errors import InputError
from bevcc.ir.input_names import bind_inputs, leaf_name, unique_name

OPSET = 17  # the `export` pass's default: what TensorRT 10 and 11 read, with per-channel Q/DQ
_WRAPPED = "module."  # the prefix _FlatInputs puts before the user's module's names
DYNAMO_MIN_OPSET = 18  # torch.export's ONNX translation writes opset 18 and newer


def capture_onnx(module: torch.nn.Module, example_inputs, opset: int = OPSET):
    """The OnnxIR of `module` run on `example_inputs` (forward's positional arguments)."""

    from bevcc.ir.onnx import OnnxIR

    if not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    arguments = bind_inputs(module, tuple(example_inputs))
    owned = copy.deepcopy(module)
    owned.eval()  # not `deepcopy(...).eval()`: mmdet's SwinTransformer.train returns None
    flat = _FlatInputs(owned, arguments)
    name = type(module).__name__
    try:
        with torch.no_grad():  # one eager run: names the outputs, and fails where forward fails
            flat(*flat.tensors)
    except Exception as exc:
        raise InputError(
            f"cannot capture {name} to ONNX: its forward failed on the example inputs "
            f"({type(exc).__name__}: {_first_line(exc)}); check the inputs the model "
            "callable returns"
        ) from exc
    if not flat.output_names:
        raise InputError(f"cannot capture {name} to ONNX: its forward returns no tensor")
    model, exporter = _export(flat, name, opset)
    model.graph.name = name
    _name_by_modules(model)
    return OnnxIR.from_model(model, source=f"{name} (captured with {exporter})")


def _export(flat: _FlatInputs, name: str, opset: int):
    """(ModelProto, the exporter that wrote it): torch.export's exporter where it captures the
    model, the TorchScript exporter where torch.export cannot (data-dependent control flow)."""
    import onnx

    exported = _torch_export(flat, opset)
    if exported is not None:
        return exported, "torch.export"
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # TracerWarnings ("converting a tensor to a Python boolean") are the point of this
        # capture: the example fixes those values, as FX specialization fixes shapes.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                flat,
                tuple(flat.tensors),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=flat.input_names,
                output_names=flat.output_names,
                do_constant_folding=True,
            )
        except Exception as exc:
            raise InputError(
                f"cannot capture {name} to ONNX: neither torch.export nor the TorchScript "
                f"exporter takes it ({type(exc).__name__}: {_first_line(exc)}); an op "
                "without an ONNX translation needs a plugin or a rewrite of that layer"
            ) from exc
    return onnx.load_from_string(buffer.getvalue()), "the TorchScript exporter"


def _torch_export(flat: _FlatInputs, opset: int):
    """The model through torch.export and its ONNX translation, or None where it fails."""
    import logging

    # the exporter and its optimizer log what they skip (constant folding of a Split, ...):
    # not the user's concern when the file checks out
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                flat,
                tuple(flat.tensors),
                dynamo=True,
                opset_version=max(opset, DYNAMO_MIN_OPSET),
                input_names=flat.input_names,
                output_names=flat.output_names,
                optimize=True,
                verbose=False,
            )
        return program.model_proto
    except Exception:  # noqa: BLE001 - any failure sends the model to the other exporter
        return None
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class _FlatInputs(torch.nn.Module):
    """`module` called with one tensor per graph input, returning a flat tuple of tensors:
    the exporter names inputs and outputs positionally, bevcc names them by structure."""

    def __init__(self, module: torch.nn.Module, arguments: list[tuple[str, object]]):
        super().__init__()
        self.module = module
        self.input_names: list[str] = []
        self.tensors: list[torch.Tensor] = []
        self.specs = []
        self.leaves = []
        taken: set[str] = set()
        for name, value in arguments:
            leaves, spec = pytree.tree_flatten_with_path(value)
            self.specs.append(spec)
            kept = []
            for path, leaf in leaves:
                if isinstance(leaf, torch.Tensor):
                    self.input_names.append(unique_name(leaf_name(name, path), taken))
                    self.tensors.append(leaf)
                    kept.append(None)  # filled from forward's arguments
                else:
                    kept.append(leaf)
            self.leaves.append(kept)
        self.output_names: list[str] = []

    def forward(self, *tensors):
        given = iter(tensors)
        args = [
            pytree.tree_unflatten(
                [next(given) if leaf is None else leaf for leaf in leaves],
                spec,
            )
            for leaves, spec in zip(self.leaves, self.specs, strict=True)
        ]
        outputs = self.module(*args)
        flat, _ = pytree.tree_flatten_with_path(outputs)
        tensors_out = [(path, t) for path, t in flat if isinstance(t, torch.Tensor)]
        if not self.output_names:
            single = len(tensors_out) == 1 and not tensors_out[0][0]
            taken: set[str] = set()
            self.output_names = [
                "output" if single else unique_name(_output_name(path, i), taken)
                for i, (path, _) in enumerate(tensors_out)
            ]
        return tuple(t for _, t in tensors_out)


def _name_by_modules(model) -> None:
    """Names as the user's model has them: weights without the wrapper's `module.` prefix, and
    nodes by the module path that made them (`shared/conv2d`; the TorchScript exporter's
    `/shared/Conv`), so reports and sensitivity tables name layers the way the code does."""
    import ast

    taken: set[str] = set()
    for node in model.graph.node:
        scopes = next(
            (p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None
        )
        if scopes is not None:
            parts = ast.literal_eval(scopes)
            owner = parts[-2] if len(parts) >= 3 and parts[-2] != _WRAPPED[:-1] else ""
            owner = owner.removeprefix(_WRAPPED)
            node.name = f"{owner}/{parts[-1]}" if owner else parts[-1]
        elif node.name.startswith("/module/"):
            node.name = node.name[len("/module") :]
        if node.name:
            node.name = unique_name(node.name, taken)
    values = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    renamed = {}
    for tensor in model.graph.initializer:
        short = tensor.name.removeprefix(_WRAPPED)
        if short != tensor.name and short not in values and short not in renamed.values():
            renamed[tensor.name] = short
            tensor.name = short
    for node in model.graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
    for info in model.graph.value_info:
        info.name = renamed.get(info.name, info.name)


def _output_name(path, index: int) -> str:
    keys = [k for k in path if isinstance(k, pytree.MappingKey)]
    return leaf_name("output", path) if keys else f"output_{index}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
