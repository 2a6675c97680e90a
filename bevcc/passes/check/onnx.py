"""onnx `check`: run onnx.checker and strict shape inference; changes nothing."""

from bevcc.ir.onnx import OnnxIR
from bevcc.pm.pass_base import Pass, PassResult


class Check(Pass):
    name = "check"
    summary = "Validate the ONNX graph with onnx.checker and strict shape inference (even with --no-verify)."
    ir = "onnx"

    def call(self, ir: OnnxIR) -> PassResult:
        ir.verify()
        return PassResult(ir, modified=False)
