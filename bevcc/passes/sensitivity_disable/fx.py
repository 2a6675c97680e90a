"""fx `sensitivity_disable`: units are quantizers sharing a scale domain with their layers'
weight quantizers; keeping one float disables its quantizers in the module (see _flow.py)."""

from __future__ import annotations

from bevcc.batching import fx_input_shapes
from bevcc.device import device_of, running_on
from bevcc.passes.sensitivity_disable import FX
from bevcc.passes.sensitivity_disable._flow import SensitivityFlow


class SensitivityDisable(SensitivityFlow, declaration=FX):
    def _units(self, ir):
        from bevcc.sensitivity.units import find_units

        return find_units(ir)

    def _input_names(self, ir):
        return [n.name for n in ir.graph.nodes if n.op == "placeholder"]

    def _input_shapes(self, ir):
        return fx_input_shapes(ir)

    def _make_evaluator(self, ir, units, batches, metric):
        from bevcc.sensitivity.fx_eval import FxEvaluator

        return FxEvaluator(
            ir.module, batches, self._input_names(ir), metric, device=device_of(self.context)
        )

    def _measuring_on(self, ir):
        return running_on(ir.module, device_of(self.context))

    def _disable(self, ir, units, chosen):
        for unit in chosen:
            unit.set_enabled(ir.module, False)
        return ir
