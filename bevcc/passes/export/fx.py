"""`export`: lower the FX graph to ONNX with torch.onnx.export (TorchScript exporter)."""

import io
import warnings

from bevcc.errors import InputError
from bevcc.ir.fx import FxIR
from bevcc.ir.onnx import OnnxIR
from bevcc.passes.export import FX
from bevcc.pm.pass_base import Pass, PassResult


class Export(Pass, declaration=FX):
    def requires(self, ir: FxIR) -> None:
        if ir.example_inputs is None:
            raise InputError(
                "export needs example inputs: return (module, example_inputs) from "
                "the model callable, or give --calib data"
            )
        from bevcc.quant.quantizer import check_exportable

        check_exportable(ir.module, "export")

    def call(self, ir: FxIR) -> PassResult:
        import onnx
        import torch

        input_names = [n.name for n in ir.graph.nodes if n.op == "placeholder"]
        buffer = io.BytesIO()
        dynamic_axes = None
        with torch.no_grad():
            outputs = ir.module(*ir.example_inputs)
        output_names = _output_names(outputs)
        if self.options.dynamic_batch:
            dynamic_axes = {name: {0: "batch"} for name in input_names + output_names}
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but is the one that needs no onnxscript;
            # its deprecation notices are not the user's concern.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                ir.module,
                tuple(ir.example_inputs),
                buffer,
                dynamo=False,
                opset_version=self.options.opset,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        model = onnx.load_from_string(buffer.getvalue())
        _qdq_constants_to_initializers(model)
        return PassResult(OnnxIR.from_model(model, source="export"), modified=True)


def _qdq_constants_to_initializers(model) -> None:
    """torch writes Q/DQ scales and zero points as Constant nodes; TensorRT-ready files (and the
    ONNX path of qdq_insert) carry them as initializers."""
    from onnx import numpy_helper

    readers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    outputs = {o.name for o in model.graph.output}
    keep = []
    for node in model.graph.node:
        ops = readers.get(node.output[0], set()) if node.op_type == "Constant" else set()
        is_tensor = node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]
        if (
            is_tensor
            and ops
            and ops <= {"QuantizeLinear", "DequantizeLinear"}
            and node.output[0] not in outputs
        ):
            array = numpy_helper.to_array(node.attribute[0].t)
            model.graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def _output_names(outputs) -> list[str]:
    import torch

    flat = outputs if isinstance(outputs, (tuple, list)) else [outputs]
    count = sum(1 for o in flat if isinstance(o, torch.Tensor))
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
