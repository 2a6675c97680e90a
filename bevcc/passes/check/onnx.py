"""onnx `check`: run onnx.checker and strict shape inference; changes nothing."""

from bevcc.ir.onnx import OnnxIR
from bevcc.passes.check import ONNX
from bevcc.pm.pass_base import Pass, PassResult


class Check(Pass, declaration=ONNX):
    def call(self, ir: OnnxIR) -> PassResult:
        ir.verify()
        return PassResult(ir, modified=False)
