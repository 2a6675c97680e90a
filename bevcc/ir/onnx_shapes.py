"""onnx shape inference that cannot take the process down.

onnx 1.21's C++ shape inference indexes past the end of a vector on some malformed graphs, and
its wheels are built with libstdc++ assertions on: the interpreter aborts (SIGABRT), with no
Python exception to catch. A Conv fed a rank-2 tensor (Flatten then Conv) is one such graph:
the weight's spatial rank is read against the input's (fixed upstream after 1.21, onnx#8037;
other out-of-bounds reads were fixed beside it). User files reach the inference through
`bevcc lint`, the verifier and the onnxruntime calibration planner, so it runs in a forked child:
a crash there is an InferenceCrash naming the node it died on, and the caller says it in one line.
"""

from __future__ import annotations

import faulthandler
import functools
import os
import warnings
from collections.abc import Callable

import onnx
from onnx import checker, shape_inference


class InferenceCrash(shape_inference.InferenceError):
    """onnx's shape inference killed the process it ran in; the model is malformed."""


def infer_shapes(
    model: onnx.ModelProto | bytes,
    *,
    check_type: bool = False,
    strict_mode: bool = False,
    data_prop: bool = False,
) -> onnx.ModelProto:
    """onnx.shape_inference.infer_shapes, run where a crash cannot reach the caller.
    `data_prop`: also propagate the values of shape tensors (Shape -> Gather -> Concat ->
    Reshape), which a raw exporter's shape arithmetic needs for its outputs' shapes."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    out = _isolated(
        lambda: shape_inference.C.infer_shapes(data, check_type, strict_mode, data_prop)
    )
    if out is None:  # the child died: find the node and say what it was fed
        parsed = model if isinstance(model, onnx.ModelProto) else onnx.load_from_string(data)
        raise InferenceCrash(_crash_message(parsed))
    return onnx.load_from_string(out)


def check_shapes(data: bytes) -> None:
    """Strict, type-checking inference on serialized bytes, for its errors only (parsing the
    inferred model back costs as much as the inference on large files)."""

    def run() -> bytes:
        shape_inference.C.infer_shapes(data, True, True, False)
        return b""

    if _isolated(run) is None:
        raise InferenceCrash(_crash_message(onnx.load_from_string(data)))


def check_shapes_path(path: str, inferred_path: str) -> None:
    """check_shapes for a model above protobuf's 2 GiB limit, saved with external data."""

    def run() -> bytes:
        shape_inference.infer_shapes_path(path, inferred_path, check_type=True, strict_mode=True)
        return b""

    if _isolated(run) is None:
        raise InferenceCrash(_crash_message(onnx.load(path, load_external_data=False)))


# ---- the child process ------------------------------------------------------------------------
_OK, _RAISED = b"0", b"1"
_ERRORS = {
    "InferenceError": shape_inference.InferenceError,
    "ValidationError": checker.ValidationError,
}


def _isolated(run: Callable[[], bytes]) -> bytes | None:
    """`run()` in a forked child: its bytes, its exception re-raised here, or None if it died.

    fork shares the model's memory copy-on-write, so nothing is serialized on the way in; the
    child only runs onnx's C++ code and leaves with os._exit, never back into the caller.
    """
    if not hasattr(os, "fork"):  # no fork (Windows): run in-process, as onnx itself would
        return run()
    _warm_up()
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():  # 3.12 warns about fork beside torch's threads; the child
        warnings.simplefilter("ignore", DeprecationWarning)  # takes no lock they could hold
        pid = os.fork()
    if pid == 0:
        _child(run, read_fd, write_fd)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()  # read to EOF before waiting: a large result fills the pipe
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0 or not payload:
        return None
    if payload[:1] == _RAISED:
        name, _, message = payload[1:].decode("utf-8", "replace").partition("\0")
        raise _ERRORS.get(name, RuntimeError)(message)
    return payload[1:]


@functools.cache
def _warm_up() -> None:
    """Build onnx's op schema registry here, once: a child building it for itself each time
    costs 20 ms (ten times the fork). One Identity on a scalar cannot crash the inference."""
    helper, scalar = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "warm_up",
        [helper.make_tensor_value_info("x", scalar, [])],
        [helper.make_tensor_value_info("y", scalar, [])],
    )
    shape_inference.C.infer_shapes(helper.make_model(graph).SerializeToString(), True, True, False)


def _child(run: Callable[[], bytes], read_fd: int, write_fd: int) -> None:
    code = 0
    try:
        os.close(read_fd)
        # a crash prints a libstdc++ assertion (and, under pytest or PYTHONFAULTHANDLER, a
        # Python traceback); the parent's one-line error says it instead
        faulthandler.disable()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            payload = _OK + run()
        except Exception as exc:  # noqa: BLE001 - every error goes back to the parent
            payload = _RAISED + f"{type(exc).__name__}\0{exc}".encode()
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
    except BaseException:  # noqa: BLE001 - the child must never return into the caller
        code = 1
    finally:
        os._exit(code)


# ---- the diagnosis ----------------------------------------------------------------------------
def _crash_message(model: onnx.ModelProto) -> str:
    """Which node the inference dies on, and the shapes it was fed.

    The inference visits nodes in file order (the checker requires topological order), so a
    prefix of the nodes holding the culprit crashes and a shorter one does not: bisect on it.
    """
    nodes = len(model.graph.node)
    good, bad = 0, nodes
    if _prefix_crashes(model, bad):
        while bad - good > 1:
            mid = (good + bad) // 2
            good, bad = (good, mid) if _prefix_crashes(model, mid) else (mid, bad)
    else:
        bad = 0
    how = "fix the exporter or the edit that produced it"
    if bad == 0:
        return f"onnx shape inference crashes (SIGABRT) on this graph; {how}"
    node = model.graph.node[bad - 1]
    shapes = _prefix_shapes(model, bad - 1)
    fed = ", ".join(f"{name} {shapes.get(name, '?')}" for name in node.input if name)
    return (
        f"onnx shape inference crashes (SIGABRT) on node '{node.name or node.output[0]}' "
        f"({node.op_type}) fed {fed}: its inputs do not fit the op (e.g. an input rank that "
        f"differs from its weight's); {how}"
    )


def _prefix(model: onnx.ModelProto, count: int) -> bytes:
    """The model with only its first `count` nodes (called in a child: edits its own copy)."""
    del model.graph.node[count:]
    del model.graph.output[:]  # outputs of dropped nodes would dangle
    return model.SerializeToString()


def _prefix_crashes(model: onnx.ModelProto, count: int) -> bool:
    def run() -> bytes:
        shape_inference.C.infer_shapes(_prefix(model, count), False, False, False)
        return b""

    try:
        return _isolated(run) is None
    except Exception:  # noqa: BLE001 - an error, not a crash: the culprit is further on
        return False


def _prefix_shapes(model: onnx.ModelProto, count: int) -> dict[str, list]:
    """Every tensor's shape after inference on the first `count` nodes (which do not crash)."""

    def run() -> bytes:
        return shape_inference.C.infer_shapes(_prefix(model, count), False, False, False)

    try:
        out = _isolated(run)
    except Exception:  # noqa: BLE001 - shapes are a help in the message, not needed
        out = None
    inferred = onnx.load_from_string(out) if out else model
    shapes = {}
    infos = [*inferred.graph.input, *inferred.graph.value_info]
    for info in infos:
        if info.type.tensor_type.HasField("shape"):
            dims = info.type.tensor_type.shape.dim
            shapes[info.name] = [
                d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims
            ]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes
