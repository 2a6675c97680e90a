"""ONNX IR adapter: load (external data, opset upgrade), edit via onnx-graphsurgeon, verify, dump, save."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from bevcc.atomic import atomic_path
from bevcc.errors import InputError
from bevcc.ir.base import IR, IRInvalid
from bevcc.ir.digest import array_digest, shape_text, text_digest, value_summary
from bevcc.ir.onnx_shapes import check_shapes, check_shapes_path
from bevcc.ir.topo import stable_toposort

__all__ = ["OnnxIR", "read_onnx_file", "save_model_atomic", "stable_toposort"]

log = logging.getLogger(__name__)

MIN_OPSET = 13  # per-channel Q/DQ (`axis`) needs opset 13
_PROTO_LIMIT = 2**31 - 1  # protobuf cannot serialize a single message above 2 GiB
_DEFAULT_DOMAINS = ("", "ai.onnx")


class OnnxIR(IR):
    """An ONNX model held as an onnx-graphsurgeon graph plus the model-level fields gs drops."""

    kind = "onnx"

    def __init__(
        self,
        graph: gs.Graph,
        metadata_props: dict[str, str] | None = None,
        source: str = "<memory>",
    ):
        self.graph = graph
        self.metadata_props = dict(metadata_props or {})
        self.source = source

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> OnnxIR:
        return cls.from_model(read_onnx_file(path), source=str(path))

    @classmethod
    def from_model(cls, model: onnx.ModelProto, source: str = "<memory>") -> OnnxIR:
        model = _raw_encoded(_upgrade_opset(model, source))
        try:
            graph = gs.import_onnx(model)
        except Exception as exc:
            raise InputError(
                f"{source}: cannot import the ONNX graph ({exc}); run onnx.checker "
                "on it to see what is malformed"
            ) from exc
        meta = {p.key: p.value for p in model.metadata_props}
        return cls(graph, meta, source)

    def to_model(self) -> onnx.ModelProto:
        self.graph.nodes = stable_toposort(self.graph)
        model = gs.export_onnx(self.graph, do_type_check=False)
        # a plugin's domain (TensorRT plugins, com.microsoft) is no onnx opset: it needs no IR
        # version, and onnx raises on it unless told to ignore it
        model.ir_version = max(
            model.ir_version,
            onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True),
        )
        del model.metadata_props[:]
        for key in sorted(self.metadata_props):
            model.metadata_props.add(key=key, value=self.metadata_props[key])
        return model

    @property
    def opset(self) -> int:
        return int(self.graph.opset)

    # ---- IR interface -------------------------------------------------------------------------
    def verify(self) -> None:
        self._verify_model(self.to_model())

    def verify_and_fingerprint(self) -> str:
        model = self.to_model()  # exported and serialized once for both checks
        data = _serialized(model)
        self._verify_model(model, data)
        return self._fingerprint_model(model, data)

    def _verify_model(self, model: onnx.ModelProto, data: bytes | None = None) -> None:
        data = data if data is not None else _serialized(model)
        try:
            if data is not None:
                onnx.checker.check_model(data)
                check_shapes(data)
            else:
                _verify_large(model)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise IRInvalid(f"onnx graph is invalid: {first}") from exc

    def dump(self) -> str:
        return _OnnxDumper().dump(self.graph, self.metadata_props)

    def fingerprint(self) -> str:
        return self._fingerprint_model(self.to_model())

    def _fingerprint_model(self, model: onnx.ModelProto, data: bytes | None = None) -> str:
        # Everything a file would hold (value_info, names, doc strings) counts as a change.
        data = data if data is not None else _serialized(model)
        if data is not None:
            return text_digest(data)
        names = "\n".join(node.name or "" for node in self.graph.nodes)
        # the dump shows float tensors approximately; the fingerprint must see every bit
        constants = [
            f"{name}#{array_digest(np.asarray(t.values))}"
            for name, t in sorted(self.graph.tensors().items())
            if isinstance(t, gs.Constant)
        ]
        return text_digest(self.dump(), names, *constants)

    def node_count(self) -> int:
        return len(self.graph.nodes)

    @property
    def default_suffix(self) -> str:
        return ".onnx"

    def save(self, path: str | os.PathLike) -> None:
        save_model_atomic(self.to_model(), path)


def read_onnx_file(path: str | os.PathLike) -> onnx.ModelProto:
    """The model in `path` with its external data, as written (no opset upgrade); bad files are
    one InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file; check the path")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InputError(
            f"{path} is not a readable ONNX file ({exc}); re-export it or check "
            "that the copy is complete"
        ) from exc
    if not model.graph.node and not model.graph.output:
        raise InputError(f"{path} holds no ONNX graph (empty or not an ONNX model); re-export it")
    _load_external_data(model, path)
    return model


def save_model_atomic(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Write `model` to `path` via temp file + rename; above 2 GiB weights go to `<name>.data`."""
    path = Path(path)
    if model.ByteSize() < _PROTO_LIMIT:
        with atomic_path(path) as tmp:
            tmp.write_bytes(model.SerializeToString())
        return
    data_name = path.name + ".data"
    # onnx writes the data file next to the model under `location`: stage both, then rename.
    # Contexts exit in reverse: the data file is renamed into place before the model naming it.
    with (
        atomic_path(path) as tmp_model,
        atomic_path(path.parent / data_name) as tmp_data,
        tempfile.TemporaryDirectory(dir=path.parent) as staging,
    ):
        staged = Path(staging) / path.name
        onnx.save_model(
            model,
            str(staged),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
        )
        os.replace(Path(staging) / data_name, tmp_data)
        os.replace(staged, tmp_model)


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            if not (path.parent / location).is_file():
                raise InputError(
                    f"{path}: external data file '{location}' for tensor "
                    f"'{tensor.name}' is missing; place it next to the model"
                )
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: cannot read its external data ({exc}); re-export the model "
            "with its .data file"
        ) from exc


def _upgrade_opset(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    opset = next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), None)
    if opset is None or opset >= MIN_OPSET:
        return model
    try:
        upgraded = onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:
        raise InputError(
            f"{source}: cannot upgrade opset {opset} to {MIN_OPSET} ({exc}); "
            f"re-export the model with opset >= {MIN_OPSET}"
        ) from exc
    log.info("%s: upgraded opset %d -> %d", source, opset, MIN_OPSET)
    return upgraded


def _raw_encoded(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every tensor stored in typed fields (float_data, int32_data: what modelopt
    writes for its scales) re-encoded as raw_data, as onnx-graphsurgeon exports a constant once a
    pass has read it. Without this, a check pass that only reads a scale would change the
    exported file, and the pipeline would report it as an unreported change."""
    if not any(_typed_encoding(t) for t in _stored_tensors(model)):
        return model
    model = _copy(model)
    for tensor in _stored_tensors(model):
        if _typed_encoding(tensor):
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
    return model


def _stored_tensors(model: onnx.ModelProto):
    """The top graph's initializers and Constant values (what gs imports as constants)."""
    yield from model.graph.initializer
    for node in model.graph.node:
        if node.op_type == "Constant":
            yield from (a.t for a in node.attribute if a.name == "value")


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _typed_encoding(tensor: onnx.TensorProto) -> bool:
    return (
        not tensor.HasField("raw_data")
        and tensor.data_location != onnx.TensorProto.EXTERNAL
        and tensor.data_type != onnx.TensorProto.STRING
    )


def _serialized(model: onnx.ModelProto) -> bytes | None:
    """The model as one protobuf message, or None above protobuf's 2 GiB limit. Serializing a
    model with 100M+ weights takes about a second: callers share the bytes."""
    return model.SerializeToString() if model.ByteSize() < _PROTO_LIMIT else None


def _verify_large(model: onnx.ModelProto) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save_model(model, path, save_as_external_data=True, location="model.data")
        onnx.checker.check_model(path)
        check_shapes_path(path, os.path.join(tmp, "inferred.onnx"))


class _OnnxDumper:
    """Canonical text of a gs graph: topological order, sorted attributes, tensors as digests."""

    def __init__(self):
        self.constants_seen: set[int] = set()

    def dump(self, graph: gs.Graph, metadata_props: dict[str, str]) -> str:
        opsets = {d.domain or "ai.onnx": d.version for d in (graph.import_domains or [])}
        opsets.setdefault("ai.onnx", int(graph.opset))
        lines = ["onnx opset " + ", ".join(f"{k}={v}" for k, v in sorted(opsets.items()))]
        lines += [f"meta {k}={v!r}" for k, v in sorted(metadata_props.items())]
        self._graph_body(graph, lines, indent="")
        return "\n".join(lines) + "\n"

    def _graph_body(self, graph: gs.Graph, lines: list[str], indent: str) -> None:
        for tensor in graph.inputs:
            lines.append(f"{indent}input {self._variable(tensor)}")
        for node in stable_toposort(graph):
            for tensor in node.inputs:
                if isinstance(tensor, gs.Constant) and id(tensor) not in self.constants_seen:
                    self.constants_seen.add(id(tensor))
                    lines.append(f"{indent}const %{tensor.name} : {_constant(tensor)}")
            outs = ", ".join(f"%{t.name}" for t in node.outputs)
            ins = ", ".join(f"%{t.name}" if t.name else "<none>" for t in node.inputs)
            op = node.op if node.domain in (None, "", "ai.onnx") else f"{node.domain}::{node.op}"
            subgraphs = {k: v for k, v in node.attrs.items() if isinstance(v, gs.Graph)}
            attrs = ", ".join(
                f"{k}={_attr(v)}" for k, v in sorted(node.attrs.items()) if k not in subgraphs
            )
            lines.append(f"{indent}{outs} = {op}({ins})" + (f" {{{attrs}}}" if attrs else ""))
            for key in sorted(subgraphs):
                lines.append(f"{indent}  subgraph {key} {{")
                self._graph_body(subgraphs[key], lines, indent + "    ")
                lines.append(f"{indent}  }}")
        for tensor in graph.outputs:
            lines.append(f"{indent}output {self._variable(tensor)}")

    @staticmethod
    def _variable(tensor: gs.Tensor) -> str:
        if isinstance(tensor, gs.Constant):
            return f"%{tensor.name} : {_constant(tensor)}"
        dtype = np.dtype(tensor.dtype).name if tensor.dtype is not None else "?"
        return f"%{tensor.name} : {dtype}{shape_text(tensor.shape)}"


def _constant(tensor: gs.Constant) -> str:
    values = np.asarray(tensor.values)
    return f"{values.dtype.name}{shape_text(values.shape)} {value_summary(values)}"


def _attr(value) -> str:
    if isinstance(value, gs.Tensor):
        return _constant(value) if isinstance(value, gs.Constant) else f"%{value.name}"
    if isinstance(value, np.ndarray):
        return f"{value.dtype.name}{shape_text(value.shape)} {value_summary(value)}"
    if isinstance(value, float):
        return repr(float(np.float32(value)))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_attr(v) for v in value) + "]"
    if isinstance(value, bytes):
        return repr(value.decode("utf-8", "replace"))
    if isinstance(value, str):
        return repr(value)
    return str(value)
