"""onnx `sensitivity_disable`: the FX pass's analysis on a Q/DQ ONNX file (bevcc's after
`onnx(qdq_insert,quantizer_unify)`, or another tool's such as modelopt's), run by onnxruntime.

Same options, decisions, report and disable list as on FX. Units are scale domains plus the
weight Q/DQ of the layers they feed (bevcc.sensitivity.onnx_units); keeping a unit float removes
its Q/DQ pairs, weights' included, so its layers run float and no domain is left half INT8 (the
file stays lint clean). Evaluation data is batched to the file's input shapes, as qdq_insert does.
"""

from __future__ import annotations

from bevcc.device import device_of
from bevcc.ir.onnx import OnnxIR
from bevcc.passes.sensitivity_disable import ONNX
from bevcc.passes.sensitivity_disable._flow import SensitivityFlow


class SensitivityDisableOnnx(SensitivityFlow, declaration=ONNX):
    def call(self, ir: OnnxIR):
        # exported once per run: units, evaluation and the result all read the same proto
        self._proto = ir.to_model()
        try:
            return super().call(ir)
        finally:
            self._proto = None

    def _model(self, ir: OnnxIR):
        return self._proto

    def _units(self, ir):
        from bevcc.sensitivity.onnx_units import find_units

        return find_units(self._model(ir))

    def _input_names(self, ir):
        model = self._model(ir)
        initializers = {t.name for t in model.graph.initializer}
        return [i.name for i in model.graph.input if i.name not in initializers]

    def _input_shapes(self, ir):
        from bevcc.quant.onnx_calib import input_shapes

        return input_shapes(self._model(ir))

    def _make_evaluator(self, ir, units, batches, metric):
        from bevcc.sensitivity.onnx_eval import OnnxEvaluator

        return OnnxEvaluator(
            self._model(ir),
            units,
            batches,
            metric,
            getattr(self.context.calib, "description", "the evaluation data"),
            device=device_of(self.context),
        )

    def _disable(self, ir, units, chosen):
        from bevcc.sensitivity.onnx_strip import strip

        stripped = strip(self._model(ir), chosen)
        return OnnxIR.from_model(stripped, source=ir.source)
