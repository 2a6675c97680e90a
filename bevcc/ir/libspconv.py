"""The libspconv file as an IR: an onnx.ModelProto that only libspconv's parser reads.

onnx.checker, onnxruntime and TensorRT all reject these files (custom ops, Reshape/Transpose
with attributes), so verification is bevcc's own parser-equivalent validator.
"""

from __future__ import annotations

import hashlib

import onnx

from bevcc.atomic import atomic_path
from bevcc.ir.base import IR, IRInvalid
from bevcc.ir.digest import shape_text, value_summary


class LibspconvIR(IR):
    kind = "libspconv"

    def __init__(self, model: onnx.ModelProto):
        self.model = model

    def verify(self) -> None:
        from bevcc.sparse.libspconv_check import check_libspconv

        problems = check_libspconv(self.model)
        if problems:
            raise IRInvalid(
                f"libspconv file: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            )

    def dump(self) -> str:
        graph = self.model.graph
        lines = [
            "libspconv opset "
            + ",".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in self.model.opset_import)
        ]
        lines += [f"input %{i.name} : {_type(i)}" for i in graph.input]
        for t in graph.initializer:
            array = onnx.numpy_helper.to_array(t)
            lines.append(
                f"const %{t.name} : {array.dtype.name}{shape_text(array.shape)} "
                f"{value_summary(array)}"
            )
        for node in graph.node:
            attrs = ", ".join(
                f"{a.name}={_value(onnx.helper.get_attribute_value(a))}"
                for a in sorted(node.attribute, key=lambda a: a.name)
            )
            lines.append(
                f"%{', %'.join(node.output)} = {node.op_type}"
                f"({', '.join('%' + i for i in node.input)})" + (f" {{{attrs}}}" if attrs else "")
            )
        lines += [f"output %{o.name}" for o in graph.output]
        return "\n".join(lines) + "\n"

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model.SerializeToString(deterministic=True)).hexdigest()[:16]

    def node_count(self) -> int:
        return len(self.model.graph.node)

    @property
    def default_suffix(self) -> str:
        return ".onnx"

    def save(self, path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(self.model.SerializeToString(deterministic=True))

    @classmethod
    def load(cls, path) -> LibspconvIR:
        from bevcc.ir.onnx import read_onnx_file

        return cls(read_onnx_file(path))


def _type(info) -> str:
    t = info.type.tensor_type
    dims = [d.dim_value if d.dim_value else (d.dim_param or "?") for d in t.shape.dim]
    return f"{onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}[{','.join(map(str, dims))}]"


def _value(value) -> str:
    if isinstance(value, bytes):
        return repr(value.decode())
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return str(value)
