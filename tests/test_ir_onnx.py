"""ONNX IR adapter: load (external data, opset upgrade), verify, canonical dump, atomic save."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bevcc.atomic import atomic_path
from bevcc.errors import InputError
from bevcc.ir.base import IRInvalid
from bevcc.ir.onnx import OnnxIR


def test_dump_of_the_exported_reference_model(golden, tiny_onnx):
    golden("tiny_cnn.onnx", OnnxIR.load(tiny_onnx))


def _opset9_model():
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 1, 1], [1.0, -2.0])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])


def test_old_opset_is_upgraded_not_rejected(tmp_path):
    path = tmp_path / "old.onnx"
    onnx.save(_opset9_model(), path)
    ir = OnnxIR.load(path)
    assert ir.opset == 13
    ir.verify()
    assert ir.dump().splitlines()[0] == "onnx opset ai.onnx=13"


def test_external_data_is_loaded_and_dumps_the_same(tmp_path, tiny_onnx):
    model = onnx.load(tiny_onnx)
    onnx.save_model(
        model,
        tmp_path / "ext.onnx",
        save_as_external_data=True,
        location="ext.onnx.data",
        size_threshold=0,
    )
    assert OnnxIR.load(tmp_path / "ext.onnx").dump() == OnnxIR.load(tiny_onnx).dump()


def test_missing_external_data_names_the_file(tmp_path, tiny_onnx):
    model = onnx.load(tiny_onnx)
    onnx.save_model(
        model,
        tmp_path / "ext.onnx",
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(
        InputError,
        match=r"external data file 'weights.bin' for tensor '.*' is "
        r"missing; place it next to the model",
    ):
        OnnxIR.load(tmp_path / "ext.onnx")


@pytest.mark.parametrize("content", [b"\x08\x07garbage\xff\xfe" * 7, b""])
def test_garbage_is_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        OnnxIR.load(path)
    assert str(info.value).startswith(f"{path} ")
    assert "re-export" in str(info.value)


def test_truncated_file_is_one_clear_error(tmp_path, tiny_onnx):
    path = tmp_path / "cut.onnx"
    path.write_bytes(tiny_onnx.read_bytes()[: tiny_onnx.stat().st_size // 2])
    with pytest.raises(InputError, match="is not a readable ONNX file"):
        OnnxIR.load(path)


def test_missing_file():
    with pytest.raises(InputError, match=r"nope.onnx: no such ONNX file"):
        OnnxIR.load("nope.onnx")


def test_verify_rejects_an_invalid_graph(tiny_onnx):
    ir = OnnxIR.load(tiny_onnx)
    conv_weight = ir.graph.nodes[0].inputs[1]
    conv_weight.values = conv_weight.values.astype(np.float64)  # Conv needs one float type
    with pytest.raises(IRInvalid, match="onnx graph is invalid"):
        ir.verify()


def test_save_is_deterministic_and_leaves_no_temporary_files(tmp_path, tiny_onnx):
    ir = OnnxIR.load(tiny_onnx)
    ir.save(tmp_path / "a.onnx")
    OnnxIR.load(tiny_onnx).save(tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx", "tiny.onnx"]
    onnx.checker.check_model(onnx.load(tmp_path / "a.onnx"))


def test_a_write_failing_half_way_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.onnx"
    target.write_bytes(b"old")
    with (
        pytest.raises(InputError, match="failed half-way \\(disk full\\); nothing was written"),
        atomic_path(target) as tmp,
    ):
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]


def test_unwritable_output_is_one_clear_error(tmp_path, tiny_onnx):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(
        InputError,
        match=r"cannot write .*file/out.onnx: .*; choose a writable "
        r"output path",
    ):
        OnnxIR.load(tiny_onnx).save(blocker / "out.onnx")


def test_models_over_the_protobuf_limit_are_saved_with_external_data(
    monkeypatch, tmp_path, tiny_onnx
):
    import bevcc.ir.onnx as onnx_ir

    monkeypatch.setattr(onnx_ir, "_PROTO_LIMIT", 1000)  # stands in for 2 GiB
    ir = OnnxIR.load(tiny_onnx)
    ir.verify()  # the path-based checker route
    ir.save(tmp_path / "big.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data", "tiny.onnx"]
    assert (tmp_path / "big.onnx").stat().st_size < 10_000
    assert OnnxIR.load(tmp_path / "big.onnx").dump() == ir.dump()


def test_reading_a_constant_stored_in_typed_fields_is_no_change():
    """modelopt writes its scales as float_data; onnx-graphsurgeon re-encodes a constant as
    raw_data once it is read. Loading re-encodes them up front, so a check pass that only reads
    a scale leaves the exported file (its fingerprint) as it was."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 1, 1], [1.0, -2.0])  # float_data
    assert not weight.HasField("raw_data")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ir = OnnxIR.from_model(model)
    before = ir.fingerprint()
    values = ir.graph.tensors()["w"].values
    assert values.ravel().tolist() == [1.0, -2.0]
    assert ir.fingerprint() == before
    assert not model.graph.initializer[0].HasField("raw_data")  # the caller's model is untouched
