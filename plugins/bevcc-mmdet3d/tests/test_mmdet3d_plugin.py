"""The installed plugin: listed by the real CLI, mmdet3d importable, honest stand-in, clear errors."""

import pytest
import torch
from bevcc_mmdet3d import ext_standin, mm

from bevcc.errors import InputError
from bevcc.testing import run_bevcc


def test_bevcc_plugins_lists_what_the_plugin_adds():
    proc = run_bevcc("plugins")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    block = out[out.index("mmdet3d 0.1.0 (bevcc_mmdet3d.plugin)") :].split("\n")[:3]
    assert block[1] == ("  models: mmdet3d_resnet, mmdet3d_second_fpn, mmdet3d_sparse_encoder")
    assert "spconv.pytorch.modules.SparseModule" in block[2]
    assert "torch.nn.modules.conv.ConvTranspose2d" in block[2]


def test_mmdet3d_imports_and_its_compiled_ops_raise_clearly():
    registry = mm.models_registry()  # fails loudly (no skip) when mmdet3d is not installed
    assert registry.get("SparseEncoder") is not None and ext_standin.is_installed()
    from mmcv.ops import nms
    from mmcv.utils.ext_loader import check_ops_exist

    assert check_ops_exist() is False  # the stand-in does not claim to be the compiled library
    with pytest.raises(ext_standin.CompiledOpUnavailable, match="'nms' is a compiled"):
        nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([0.9]), iou_threshold=0.5)


def test_bad_config_is_one_clear_error():
    with pytest.raises(InputError, match="type 'SECONDD' is not registered"):
        mm.build({"type": "SECONDD", "in_channels": 256})
    with pytest.raises(InputError, match=r"type 'SECOND' failed to build: .*layer_nums"):
        mm.build({"type": "SECOND", "in_channels": 256, "layer_nums": [5]})


def test_bad_config_through_the_cli_is_one_line_and_writes_nothing(tmp_path):
    builder = tmp_path / "bad.py"
    builder.write_text(
        "from bevcc_mmdet3d import mm\n\n\ndef build():\n"
        "    return mm.build({'type': 'SECONDFPN', 'in_channels': [128],"
        " 'out_channels': [256, 256]})\n"
    )
    out = tmp_path / "x.onnx"
    run = run_bevcc("compile", f"{builder}:build", "-o", out)
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bevcc: error: model ")
    assert "type 'SECONDFPN' failed to build" in lines[0] and "fix the config keys" in lines[0]
    assert not out.exists()
