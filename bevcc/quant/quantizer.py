"""TensorQuantizer: symmetric INT8 fake quantization as one small nn.Module.

Built on torch.fake_quantize_per_tensor_affine / per_channel_affine, which both torch ONNX
exporters lower to QuantizeLinear/DequantizeLinear and which train with a straight-through
gradient. States: calibrating (records statistics, passes values through), quantizing (needs an
amax), disabled (identity). `learn_amax()` makes amax a Parameter trained with the LSQ-style
learnable op; export always uses the standard op, so the file holds plain Q/DQ.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bevcc.quant import scales

__all__ = ["QuantizerError", "TensorQuantizer"]


class QuantizerError(RuntimeError):
    pass


class TensorQuantizer(nn.Module):
    def __init__(
        self,
        num_bits: int = 8,
        axis: int | None = None,
        calibrator: str = "max",
        percentile: float = 99.99,
        enabled: bool = True,
    ):
        super().__init__()
        if num_bits != 8:
            raise ValueError("only 8-bit quantization is supported (TensorRT INT8)")
        self.num_bits, self.axis = num_bits, axis
        self.calibrator_name, self.percentile = calibrator, percentile
        self.enabled = enabled
        self.calibrating = False
        self._calibrator = None  # set while calibrating; never saved
        self.register_buffer("amax", None)

    # ---- calibration --------------------------------------------------------------------------
    def start_calibration(self) -> None:
        from bevcc.quant.calibrators import make_calibrator

        self._calibrator = make_calibrator(self.calibrator_name, self.axis, self.percentile)
        self.calibrating = True

    def finish_calibration(self) -> tuple[int, int]:
        """Set amax from the statistics; returns (floored entries, total entries)."""
        calibrator, self._calibrator, self.calibrating = self._calibrator, None, False
        if calibrator is None or not calibrator.seen:
            raise QuantizerError(
                "saw no data during calibration (is it on a path the batches never reach?)"
            )
        return self.set_amax(calibrator.compute_amax())

    def set_amax(self, amax) -> tuple[int, int]:
        floored_amax, floored = scales.floor_amax(torch.as_tensor(amax).detach().cpu().numpy())
        value = torch.as_tensor(floored_amax, dtype=torch.float32)
        if self.axis is None:
            value = value.reshape(())
        if isinstance(self.amax, nn.Parameter):
            with torch.no_grad():
                self.amax.copy_(value)
        else:
            self.amax = value
        return int(floored.sum()), int(floored.size)

    def learn_amax(self) -> None:
        """Make amax trainable (QAT); it must be calibrated first."""
        if self.amax is None:
            raise QuantizerError("calibrate before making amax learnable")
        if not isinstance(self.amax, nn.Parameter):
            value = self.amax
            del self.amax
            self.amax = nn.Parameter(value.clone())

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, x):
        if hasattr(x, "replace_feature"):  # a spconv SparseConvTensor: quantize its features
            return x.replace_feature(self._quantize(x.features))
        return self._quantize(x)

    def _quantize(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self._calibrator.collect(x.detach())
            return x
        if not self.enabled:
            return x
        if self.amax is None:
            raise QuantizerError(
                "is enabled but has no amax; calibrate it (run the pass "
                "that inserted it with calibration data) or disable it"
            )
        if torch.onnx.is_in_onnx_export():
            return self._export_forward(x)
        if isinstance(x, nn.Parameter) and not torch.is_grad_enabled():
            # A weight without autograd (evaluation, calibration of the other quantizers,
            # sensitivity runs) quantizes to the same values until it or amax changes in place
            # (an optimizer step, copy_, set_amax): reuse them. Costs one copy of the weights.
            key = (id(x), x._version, id(self.amax), self.amax._version)
            cached = getattr(self, "_weight_cache", None)
            if cached is not None and cached[0] == key:
                return cached[1]
            out = self._fake_quantize(x)
            self._weight_cache = (key, out)
            return out
        return self._fake_quantize(x)

    def _fake_quantize(self, x: torch.Tensor) -> torch.Tensor:
        amax = self.amax.clamp_min(scales.AMAX_FLOOR)  # learned amax must not reach zero either
        scale = amax / (2 ** (self.num_bits - 1) - 1)
        if self.axis is None:
            zero = torch.zeros((), dtype=torch.int32, device=x.device)
            if (
                isinstance(self.amax, nn.Parameter)
                and self.training
                and not torch.onnx.is_in_onnx_export()
            ):
                return torch._fake_quantize_learnable_per_tensor_affine(
                    x, scale.reshape(1), zero.float().reshape(1), scales.QMIN, scales.QMAX, 1.0
                )
            return torch.fake_quantize_per_tensor_affine(x, scale, zero, scales.QMIN, scales.QMAX)
        zero = torch.zeros(scale.shape, dtype=torch.int32, device=x.device)
        if (
            isinstance(self.amax, nn.Parameter)
            and self.training
            and not torch.onnx.is_in_onnx_export()
        ):
            return torch._fake_quantize_learnable_per_channel_affine(
                x, scale, zero.float(), self.axis, scales.QMIN, scales.QMAX, 1.0
            )
        return torch.fake_quantize_per_channel_affine(
            x, scale, zero, self.axis, scales.QMIN, scales.QMAX
        )

    def _apply(self, fn, *args, **kwargs):
        # .to(device) / .cpu() / .half() replace amax and the weights' data: the cached
        # fake-quant weight belongs to the old ones (a weight's version survives a move)
        self.__dict__.pop("_weight_cache", None)
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state.pop("_weight_cache", None)  # derived; never saved or deep-copied
        return state

    def _export_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same arithmetic with scale and zero point as constants of the trace, so the file
        gets scale initializers rather than a Clip/Div subgraph computing them from amax."""
        amax = np.maximum(
            self.amax.detach().cpu().numpy().astype(np.float32), np.float32(scales.AMAX_FLOOR)
        )
        scale = torch.from_numpy(np.asarray(scales.scale_of(amax, self.num_bits)))
        zero = torch.zeros(scale.shape, dtype=torch.int32)
        if self.axis is None:
            return torch.fake_quantize_per_tensor_affine(x, scale, zero, scales.QMIN, scales.QMAX)
        return torch.fake_quantize_per_channel_affine(
            x, scale, zero, self.axis, scales.QMIN, scales.QMAX
        )

    def extra_repr(self) -> str:
        parts = [f"{self.num_bits}bit", "per-tensor" if self.axis is None else f"axis={self.axis}"]
        if not self.enabled:
            parts.append("disabled")
        if self.amax is None:
            parts.append("uncalibrated")
        elif self.amax.dim() == 0:
            parts.append(f"amax={float(self.amax):.4g}")
        else:
            parts.append(f"amax=[{float(self.amax.min()):.4g}, {float(self.amax.max()):.4g}]")
        parts.append(self.calibrator_name)
        return ", ".join(parts)


def check_exportable(module: nn.Module, backend: str) -> None:
    """Every enabled quantizer has a finite, positive amax; otherwise one InputError line, so a
    backend never writes a meaningless or engine-rejected scale."""
    from bevcc.errors import InputError

    for name, q in module.named_modules():
        if not isinstance(q, TensorQuantizer) or not q.enabled:
            continue
        if q.amax is None:
            raise InputError(
                f"{backend}: quantizer {name} is enabled but uncalibrated, which "
                "would export a meaningless scale; calibrate it (give the "
                "quantizing passes calibration data, --calib) or disable it"
            )
        values = q.amax.detach().reshape(-1)
        if not bool(torch.isfinite(values).all()) or bool((values <= 0).any()):
            raise InputError(
                f"{backend}: quantizer {name} has a zero, negative or non-finite "
                "amax; recalibrate it"
            )
