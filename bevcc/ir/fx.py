"""torch.fx IR adapter: trace with plugin-declared leaf modules, verify, canonical dump, save/load."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
import traceback
from collections.abc import Iterable, Sequence

import torch
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp

from bevcc.atomic import atomic_path
from bevcc.errors import InputError
from bevcc.ir.base import IR, IRInvalid
from bevcc.ir.digest import shape_text, text_digest
from bevcc.ir.trace_rules import TraceRules

__all__ = ["FxIR"]

_DTYPE_NAMES = {
    torch.float32: "f32",
    torch.float16: "f16",
    torch.float64: "f64",
    torch.bfloat16: "bf16",
    torch.int64: "i64",
    torch.int32: "i32",
    torch.int8: "i8",
    torch.uint8: "u8",
    torch.bool: "bool",
}


class _ScopedTracer(fx.Tracer):
    """A tracer that applies plugin-declared trace rules and remembers where it failed."""

    def __init__(
        self, rules: TraceRules | Sequence[type] = ()
    ):  # torch re-creates it on unpickling
        self.rules = TraceRules.coerce(rules)
        super().__init__(autowrap_functions=self.rules.leaf_functions)
        self.leaf_types = self.rules.leaf_types

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaf_types) or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        rule = (
            None if self.is_leaf_module(m, self.path_of_module(m)) else self.rules.container_rule(m)
        )
        try:
            if rule is not None:
                return rule(m, *args, **kwargs)
            return super().call_module(m, forward, args, kwargs)
        except Exception as exc:
            # The innermost module sees the exception first; outer frames keep its scope.
            if not hasattr(exc, "_bevcc_scope"):
                exc._bevcc_scope = (self.path_of_module(m), type(m))
            raise


def _qualified_name(target) -> str:
    if isinstance(target, str):
        return target
    try:
        from torch.fx.node import _get_qualified_name

        name = _get_qualified_name(target)
    except Exception:  # noqa: BLE001 - builtins fx cannot name; fall back to the Python names
        name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"
    return name.replace("_operator.", "operator.")


def _fmt(arg) -> str:
    """Format a node argument without object addresses."""
    if isinstance(arg, fx.Node):
        return f"%{arg.name}"
    if isinstance(arg, tuple):
        inner = ", ".join(_fmt(a) for a in arg)
        return f"({inner},)" if len(arg) == 1 else f"({inner})"
    if isinstance(arg, list):
        return "[" + ", ".join(_fmt(a) for a in arg) + "]"
    if isinstance(arg, dict):
        return "{" + ", ".join(f"{k}={_fmt(v)}" for k, v in arg.items()) + "}"
    if isinstance(arg, slice):
        return f"{_fmt(arg.start)}:{_fmt(arg.stop)}:{_fmt(arg.step)}"
    if arg is None or isinstance(arg, (bool, int, float, str, torch.dtype, torch.device)):
        return repr(arg) if isinstance(arg, str) else str(arg)
    if arg is Ellipsis:
        return "..."
    if isinstance(arg, torch.Size):
        return shape_text(arg)
    return f"<{type(arg).__name__}>"


def _meta_text(node: fx.Node) -> str:
    meta = node.meta.get("tensor_meta")
    if meta is None:
        return ""
    # TensorMetadata is itself a namedtuple: only a plain sequence means several outputs.
    metas = (
        [meta] if hasattr(meta, "shape") else list(meta) if isinstance(meta, (list, tuple)) else []
    )
    parts = []
    for m in metas:
        if hasattr(m, "dtype") and hasattr(m, "shape"):
            parts.append(f"{_DTYPE_NAMES.get(m.dtype, str(m.dtype))}{shape_text(tuple(m.shape))}")
    return "  : " + ", ".join(parts) if parts else ""


class FxIR(IR):
    """A traced torch.fx GraphModule, the example inputs that drive it, and its leaf types."""

    kind = "fx"

    def __init__(
        self,
        module: fx.GraphModule,
        example_inputs: tuple | None = None,
        rules: TraceRules | Iterable[type] = (),
        name: str | None = None,
    ):
        self.module = module
        # GraphModule's class name does not survive pickling; keep the model's own name.
        self.name = name or type(module).__name__
        self.example_inputs = example_inputs
        self.rules = TraceRules.coerce(rules)
        self.leaf_types = self.rules.leaf_types
        # {input name: (int | None per dim)}: the sizes the graph requires, None where any size
        # runs; set by the frontend's shape specialization (bevcc.ir.specialize.Specialized
        # says how it is measured), None when the graph was not specialized.
        self.fixed_input_shapes: dict[str, tuple[int | None, ...]] | None = None

    @property
    def graph(self) -> fx.Graph:
        return self.module.graph

    @classmethod
    def trace(
        cls,
        module: torch.nn.Module,
        example_inputs: tuple | None = None,
        rules: TraceRules | Iterable[type] = (),
        concrete_args: dict | None = None,
    ) -> FxIR:
        """Trace a *copy* of `module`, so passes never touch the caller's parameters.

        `rules` is a TraceRules (registry.trace_rules()) or a plain iterable of leaf types.
        """
        if not isinstance(module, torch.nn.Module):
            raise InputError(f"expected a torch.nn.Module to trace, got {type(module).__name__}")
        module = copy.deepcopy(module)
        rules = TraceRules.coerce(rules)
        tracer = _ScopedTracer(rules)
        try:
            graph = tracer.trace(module, concrete_args=concrete_args)
        except Exception as exc:
            raise _trace_error(module, exc) from exc
        gm = fx.GraphModule(tracer.root, graph, type(module).__name__)
        ir = cls(gm, tuple(example_inputs) if example_inputs is not None else None, rules)
        ir.propagate_shapes()
        return ir

    def propagate_shapes(self) -> None:
        """Record dtype/shape of every node by running the example inputs (when there are any).

        torch's ShapeProp prints a traceback before re-raising; bevcc keeps errors to one line
        naming the node that failed.
        """
        if self.example_inputs is None:
            return
        failed = []

        class _Quiet(ShapeProp):
            def run_node(self, n):
                try:
                    return super().run_node(n)
                except Exception:
                    failed.append(n)
                    raise

        try:
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                _Quiet(self.module).propagate(*self.example_inputs)
        except Exception as exc:
            cause = exc.__cause__ or exc.__context__ or exc
            where = f" at node {failed[0].name} ({failed[0].target})" if failed else ""
            first = next(
                (line.strip() for line in str(cause).splitlines() if line.strip()),
                type(cause).__name__,
            )
            raise InputError(
                f"running {self.name} on its example inputs failed{where}: {first}"
            ) from exc

    def verify(self) -> None:
        try:
            self.graph.lint()
            self.module.recompile()
        except Exception as exc:
            raise IRInvalid(f"fx graph of {self.name} is invalid: {exc}") from exc

    def dump(self) -> str:
        self.propagate_shapes()
        return self._structure(with_shapes=True)

    def _structure(self, with_shapes: bool) -> str:
        modules = dict(self.module.named_modules())
        lines = [f"fx graph {self.name}"]
        for node in self.graph.nodes:
            args = ", ".join(
                [_fmt(a) for a in node.args] + [f"{k}={_fmt(v)}" for k, v in node.kwargs.items()]
            )
            if node.op == "placeholder":
                head = f"%{node.name} = placeholder"
            elif node.op == "output":
                head = f"output {args}"
            elif node.op == "call_module":
                sub = modules.get(node.target)
                desc = (
                    f"{type(sub).__name__}({sub.extra_repr()})" if sub is not None else "<missing>"
                )
                head = f"%{node.name} = call_module {node.target}: {desc}({args})"
            elif node.op == "get_attr":
                head = f"%{node.name} = get_attr {node.target}"
            else:
                head = f"%{node.name} = {node.op} {_qualified_name(node.target)}({args})"
            lines.append("  " + head + (_meta_text(node) if with_shapes else ""))
        return "\n".join(lines) + "\n"

    def fingerprint(self) -> str:
        h = hashlib.sha256(self._structure(with_shapes=False).encode())
        for name, tensor in self.module.state_dict(keep_vars=False).items():
            t = tensor.detach().contiguous().cpu()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return text_digest(h.hexdigest())

    def node_count(self) -> int:
        return len(self.graph.nodes)

    @property
    def default_suffix(self) -> str:
        return ".pt"

    def save(self, path) -> None:
        buffer = io.BytesIO()
        torch.save(
            {
                "graph_module": self.module,
                "example_inputs": self.example_inputs,
                "name": self.name,
                "fixed_input_shapes": self.fixed_input_shapes,
            },
            buffer,
        )
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path, rules: TraceRules | Iterable[type] = ()) -> FxIR:
        try:
            payload = torch.load(path, weights_only=False)
            module = payload["graph_module"]
        except Exception as exc:
            raise InputError(
                f"{path} is not a bevcc fx file ({exc}); save it with FxIR.save"
            ) from exc
        ir = cls(module, payload.get("example_inputs"), rules, payload.get("name"))
        ir.fixed_input_shapes = payload.get("fixed_input_shapes")
        return ir


# the layers qdq_insert quantizes: inside a leaf module it never sees them
_WEIGHTED_LAYERS = (
    torch.nn.Conv1d,
    torch.nn.Conv2d,
    torch.nn.Conv3d,
    torch.nn.ConvTranspose1d,
    torch.nn.ConvTranspose2d,
    torch.nn.ConvTranspose3d,
    torch.nn.Linear,
)
_LEAF_FUNCTION = (
    "make its forward traceable, or put the code that fails in a function registered as a "
    "leaf function (registry.add_leaf_function in the bevcc_register_leaf_modules hook)"
)


CAPTURE_ONNX_HINT = (
    "or leave the model as it is and let bevcc capture it as ONNX (torch.export) instead of "
    "tracing it: start the pipeline with onnx(...) where it starts with fx(...) (docs/capture.md)"
)


def is_weighted_layer(module: torch.nn.Module) -> bool:
    """A Conv/ConvTranspose/Linear (or a subclass: qdq_insert's quantized layers are leaves)."""
    return isinstance(module, _WEIGHTED_LAYERS)


def weighted_layers(module: torch.nn.Module) -> dict[str, int]:
    """Layer type name -> count of the Conv/ConvTranspose/Linear layers in `module` (itself
    included), which would stay float if `module` were a leaf."""
    counts: dict[str, int] = {}
    for sub in module.modules():
        if is_weighted_layer(sub):
            name = type(sub).__name__
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def layers_text(counts: dict[str, int]) -> str:
    """'2 quantizable layers (Conv2d 1, Linear 1)'."""
    kinds = ", ".join(f"{name} {n}" for name, n in counts.items())
    return f"{sum(counts.values())} quantizable layers ({kinds})"


def _trace_error(module: torch.nn.Module, exc: Exception) -> InputError:
    """One line: where tracing failed and the way out. A leaf module is suggested only where it
    costs nothing: never the model itself (its forward is always traced), and never a module
    holding layers qdq_insert would quantize (they would silently stay float). Every message
    ends with the route that needs no change to the model: capture it as ONNX."""
    error = _trace_error_without_capture(module, exc)
    return InputError(f"{error}; {CAPTURE_ONNX_HINT}")


def _trace_error_without_capture(module: torch.nn.Module, exc: Exception) -> InputError:
    scope = getattr(exc, "_bevcc_scope", None)
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    message += _source_line(exc)
    head = f"cannot trace {type(module).__name__}: "
    if scope is None:
        return InputError(f"{head}its forward failed: {message}; {_LEAF_FUNCTION}")
    path, module_type = scope
    type_name = module_type.__name__
    where = f"{head}module '{path}' ({type_name}) failed: {message}"
    try:
        layers = weighted_layers(module.get_submodule(path))
    except AttributeError:  # a path the tracer made up for a module it was handed as an argument
        layers = {}
    if layers:
        return InputError(
            f"{where}; {_LEAF_FUNCTION}: as a leaf module, {type_name} would keep its "
            f"{layers_text(layers)} float"
        )
    return InputError(
        f"{where}; make {type_name} a leaf module (bevcc.register_leaf_module({type_name}) or "
        "the bevcc_register_leaf_modules hook) or make its forward traceable"
    )


def _source_line(exc: Exception) -> str:
    """` at FILE:LINE: `code`` for the model's own line that failed to trace (the innermost
    frame outside torch and bevcc's tracer), so data-dependent control flow is found at once."""
    skip = (os.path.dirname(torch.__file__), os.path.dirname(__file__))
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(skip) and not f.filename.startswith("<")
    ]
    if not frames:
        return ""
    frame = frames[-1]
    code = f": `{frame.line.strip()}`" if frame.line and frame.line.strip() else ""
    return f" at {frame.filename}:{frame.lineno}{code}"
