"""`bevcc lint` names every layer twice: the PyTorch module path and the ONNX node name. bevcc
exports fx GraphModules, whose ONNX names lose the path (`/conv1_1/Conv` is the second `conv1`
scope); the path comes from the weight's state-dict name. The reference here is the module
itself: its named_modules(), in call order."""

import onnx
import torch
from torch import nn

import bevcc
from bevcc.lint.checks import lint_model


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv1(x))


class Net(nn.Module):
    """Two blocks whose convs share the name `conv1`, and a Linear on a 3-D tensor (exported as
    a MatMul on a transposed copy of its weight: no module path to read)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.blocks = nn.Sequential(Block(), Block())
        self.proj = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.proj(x.flatten(2).transpose(1, 2))


def exported(pipeline: str, calib=None) -> onnx.ModelProto:
    torch.manual_seed(0)
    example = (torch.randn(1, 3, 8, 8),)
    result = bevcc.compile((Net().eval(), example), pipeline=pipeline, calib=calib)
    return result.ir.to_model()


def test_each_layer_has_its_module_path_beside_its_onnx_name():
    report = lint_model(exported("fx(dce),export"))
    convs = [name for name, m in Net().named_modules() if isinstance(m, nn.Conv2d)]
    assert [(layer.module, layer.onnx) for layer in report.layers] == [
        (convs[0], "/stem/Conv"),
        (convs[1], "/conv1/Conv"),  # blocks.0.conv1
        (convs[2], "/conv1_1/Conv"),  # blocks.1.conv1: the ONNX name alone cannot say which
        (None, "/proj/MatMul"),
    ]
    assert [layer.label for layer in report.layers][1:3] == [
        "blocks.0.conv1 (/conv1/Conv)",
        "blocks.1.conv1 (/conv1_1/Conv)",
    ]
    assert {layer.weight_type for layer in report.layers} == {"fp32"}
    assert report.int8_layers == 0 and report.float_layers == [
        layer.onnx for layer in report.layers
    ]
    assert report.to_json()["layers"][1] == {
        "onnx": "/conv1/Conv",
        "module": "blocks.0.conv1",
        "macs": 4 * 8 * 8 * 4 * 9,
        "int8": False,
        "weight_type": "fp32",
        "precision": "fp32",  # the file's tensors are float32 and no Q/DQ feeds it
        "fp32_reason": None,
    }


def test_quantized_layers_keep_their_module_path_through_the_weight_qdq():
    calib = [{"x": torch.randn(2, 3, 8, 8).numpy()} for _ in range(2)]
    report = lint_model(
        exported('fx(qdq_insert,sensitivity_disable{disable="blocks.1.conv1"}),export', calib)
    )
    assert [(layer.module, layer.int8) for layer in report.layers] == [
        ("stem", True),
        ("blocks.0.conv1", True),
        ("blocks.1.conv1", False),  # kept float by name: the name a person gave it
        (None, True),
    ]
    assert report.int8_layers == 3
