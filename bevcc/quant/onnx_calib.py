"""Calibrate activation tensors of an ONNX model with onnxruntime, in bounded memory.

Only the tensors that get a quantizer are read, never every intermediate tensor. They are exposed
as extra graph outputs and fetched in groups whose combined size (from shape inference on the
batch's shapes) stays under a byte budget: a group per run, so the largest model costs more runs,
not more memory. Statistics are folded into the calibrators batch by batch.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch

from bevcc.batching import fit_batches
from bevcc.device import ort_providers
from bevcc.errors import InputError
from bevcc.ir.onnx_shapes import InferenceCrash, infer_shapes
from bevcc.progress import track

_ELEMENT_BYTES = {
    onnx.TensorProto.FLOAT: 4,
    onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.DOUBLE: 8,
    onnx.TensorProto.BFLOAT16: 2,
}


def calibrate_tensors(
    model: onnx.ModelProto,
    calibrators: dict,
    calib,
    *,
    budget_bytes: int = 512 << 20,
    max_batches: int = 0,
    progress: bool = True,
    device: str = "cpu",
) -> int:
    """Feed every tensor named in `calibrators` (name -> calibrator) from each batch.

    onnxruntime computes and holds every declared graph output on every run, whichever ones are
    fetched, so groups cannot share a session: each group gets a session whose outputs are just
    that group, the batches are run through it, and it is dropped before the next. Returns the
    number of batches used. `device`: onnxruntime's providers (bevcc.device.ort_providers).
    """
    input_names = [
        i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}
    ]
    calib = fit_batches(calib, input_shapes(model))
    calib.input_names = input_names
    wanted = [name for name in calibrators if name not in input_names]
    first = _feed(calib.first(), input_names, None, 0, calib)
    groups = _groups(model, wanted, first, budget_bytes) or [[]]
    used = 0
    # one session per group: the groups are runs over the data, each a loop over its batches
    runs = track(groups, "tensor groups", unit="group", enabled=progress and len(groups) > 1)
    for number, group in enumerate(runs):
        session = _session(model, group, device) if group else None
        known = used if number else None  # the first run counted the batches
        for index, batch in enumerate(
            track(calib, "calibrating", total=known, unit="batch", enabled=progress)
        ):
            if max_batches and index >= max_batches:
                break
            feed = _feed(batch, input_names, session, index, calib)
            if number == 0:  # graph inputs need no run, and are read once
                used += 1
                for name in set(calibrators) & set(feed):
                    calibrators[name].collect(torch.from_numpy(np.asarray(feed[name])))
            if session is not None:
                for name, value in zip(
                    group, _run(session, group, feed, index, calib), strict=True
                ):
                    calibrators[name].collect(torch.from_numpy(np.asarray(value)))
        del session
    return used


def input_shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    """The graph inputs' declared dims (None where free), for inputs that declare a shape."""
    initializers = {t.name for t in model.graph.initializer}
    shapes = {}
    for graph_input in model.graph.input:
        tensor_type = graph_input.type.tensor_type
        if graph_input.name in initializers or not tensor_type.HasField("shape"):
            continue
        shapes[graph_input.name] = tuple(
            d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim
        )
    return shapes


def _session(model: onnx.ModelProto, outputs: list[str], device: str = "cpu"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_cpu_mem_arena = False  # freed tensors go back to the OS between groups
    options.log_severity_level = 3
    return ort.InferenceSession(
        _with_outputs(model, outputs).SerializeToString(),
        options,
        providers=ort_providers(device),
    )


def _run(session, group: list[str], feed: dict, index: int, calib):
    try:
        return session.run(group, feed)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0]
        shapes = ", ".join(f"{n} {tuple(v.shape)}" for n, v in feed.items())
        raise InputError(
            f"calibration batch {index} of {calib.description} ({shapes}) failed "
            f"in onnxruntime: {first}"
        ) from exc


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """The model with exactly `names` as its outputs (the original ones are not needed)."""
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    del augmented.graph.output[:]
    augmented.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    return augmented


def _feed(batch: dict, names: list[str], session, index: int, calib) -> dict:
    missing = [n for n in names if n not in batch]
    if missing:
        raise InputError(
            f"calibration batch {index} of {calib.description} lacks input(s) "
            f"{', '.join(missing)}; it has {', '.join(batch)}"
        )
    types = {i.name: i.type for i in session.get_inputs()} if session is not None else {}
    feed = {}
    for name in names:
        value = batch[name]
        if types.get(name, "tensor(float)") == "tensor(float)" and value.dtype == np.float64:
            value = value.astype(np.float32)
        feed[name] = value
    return feed


def _groups(model: onnx.ModelProto, names: list[str], feed: dict, budget: int) -> list[list[str]]:
    """Pack tensors into runs of at most `budget` bytes (a tensor larger than that runs alone)."""
    sizes = _tensor_bytes(model, feed)
    groups: list[list[str]] = []
    current: list[str] = []
    total = 0
    for name in names:
        size = sizes.get(name, budget)  # unknown size: give it a run of its own
        if current and total + size > budget:
            groups.append(current)
            current, total = [], 0
        current.append(name)
        total += size
    if current:
        groups.append(current)
    return groups


def _tensor_bytes(model: onnx.ModelProto, feed: dict) -> dict[str, int]:
    """Byte size of each intermediate tensor for this batch's input shapes (shape inference)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for graph_input in fixed.graph.input:
        if graph_input.name in feed:
            dims = graph_input.type.tensor_type.shape.dim
            for dim, size in zip(dims, feed[graph_input.name].shape, strict=True):
                dim.ClearField("dim_param")
                dim.dim_value = int(size)
    try:
        inferred = infer_shapes(fixed)
    except InferenceCrash as exc:  # onnxruntime would run the same inference on it next
        raise InputError(str(exc)) from exc
    except Exception:  # noqa: BLE001 - no sizes means one tensor per run, never a wrong answer
        return {}
    sizes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        tensor_type = info.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if dims and all(d is not None for d in dims):
            sizes[info.name] = int(np.prod(dims)) * _ELEMENT_BYTES.get(tensor_type.elem_type, 8)
    return sizes
