"""The calibration driver: run the user's batches through a model whose quantizers record
statistics, then set every activation quantizer's amax.

Memory is bounded by one batch plus the calibrators' running statistics (a max, or a 2048-bin
histogram, per quantizer); no activations are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bevcc.device import running_on, to_device
from bevcc.distributed import rank_and_world
from bevcc.errors import InputError
from bevcc.progress import track
from bevcc.quant import ranges
from bevcc.quant.quantizer import QuantizerError, TensorQuantizer


@dataclass
class CalibrationReport:
    batches: int = 0
    quantizers: int = 0
    floored: list[str] = field(default_factory=list)  # quantizers whose amax hit the floor
    unused_samples: int = 0  # left over after the last full batch (bevcc.batching)


def calibrate(
    module: nn.Module,
    calib,
    input_names: list[str],
    example_inputs=None,
    *,
    quantizers: dict[str, TensorQuantizer] | None = None,
    max_batches: int = 0,
    progress: bool = True,
    device: str = "cpu",
    replay_from=None,
    record_to=None,
) -> CalibrationReport:
    """Calibrate `quantizers` (default: every TensorQuantizer in `module` without an amax).

    `device` (bevcc/device.py): the module runs there while it calibrates, each batch moved
    there as it is used, and is back on the CPU afterwards, amax included. `replay_from`: a
    ranges file a set compile recorded (bevcc/quant/ranges.py): the amax come from it and no
    batch runs. `record_to`: where to record the amax this call sets."""
    if quantizers is None:
        quantizers = {
            name: q
            for name, q in module.named_modules()
            if isinstance(q, TensorQuantizer) and q.enabled and q.amax is None
        }
    report = CalibrationReport(quantizers=len(quantizers))
    if not quantizers:
        return report
    if replay_from:
        ranges.replay(replay_from, quantizers)
    else:
        batches = (calib, input_names, example_inputs)
        _measure(module, batches, quantizers, report, max_batches, progress, device)
    if record_to is not None and rank_and_world()[0] == 0:  # every rank ends with the same amax
        ranges.record(record_to, quantizers)
    return report


def _measure(module, batches, quantizers, report, max_batches, progress, device) -> None:
    calib, input_names, example_inputs = batches
    calib.input_names = list(input_names)
    was_training = module.training
    module.eval()
    # Statistics come from the float model, as in modelopt and pytorch-quantization: the other
    # quantizers (weights included) pass values through while these calibrate.
    calibrating = {id(q) for q in quantizers.values()}
    others = [
        q
        for q in module.modules()
        if isinstance(q, TensorQuantizer) and q.enabled and id(q) not in calibrating
    ]
    for q in others:
        q.enabled = False
    for q in quantizers.values():
        q.start_calibration()
    rank, world = rank_and_world()
    try:
        with torch.no_grad(), running_on(module, device):
            for index, batch in enumerate(
                track(calib, "calibrating", unit="batch", enabled=progress and rank == 0)
            ):
                if max_batches and index >= max_batches:
                    break
                if index % world != rank:  # under torchrun each rank takes its share
                    continue
                inputs = _to_inputs(batch, input_names, example_inputs, index, calib)
                try:
                    module(*(to_device(t, device) for t in inputs))
                except (RuntimeError, ValueError, IndexError) as exc:
                    raise _batch_error(
                        exc, index, calib, inputs, input_names, example_inputs
                    ) from exc
                report.batches += 1
        report.unused_samples = getattr(calib, "dropped", 0)
        if world > 1:
            _merge_across_ranks(quantizers)
        for name, q in quantizers.items():
            try:
                floored, _ = q.finish_calibration()
            except QuantizerError as exc:
                raise QuantizerError(f"quantizer {name} {exc}") from exc
            if floored:
                report.floored.append(name)
    finally:
        for q in quantizers.values():
            q.calibrating, q._calibrator = False, None
        for q in others:
            q.enabled = True
        module.train(was_training)


def _merge_across_ranks(quantizers: dict[str, TensorQuantizer]) -> None:
    """Every rank saw a share of the batches; max statistics merge exactly by an elementwise
    max, gathered so every rank ends with the same amax."""
    from bevcc.quant.calibrators import MaxCalibrator

    local = {}
    for name, q in quantizers.items():
        if not isinstance(q._calibrator, MaxCalibrator):
            raise InputError(
                f"quantizer {name}: distributed calibration merges max statistics "
                "only; use calibrator=max or calibrate in one process"
            )
        amax = q._calibrator.amax
        local[name] = (None if amax is None else amax.tolist(), q._calibrator.seen)
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, local)
    for name, q in quantizers.items():
        parts = [part[name] for part in gathered if part[name][0] is not None]
        if not parts:
            continue
        values = torch.tensor(parts[0][0])
        for other, _ in parts[1:]:
            values = torch.maximum(values, torch.tensor(other))
        q._calibrator.amax = values
        q._calibrator.seen = sum(seen for _, seen in parts)


def _to_inputs(batch: dict, names: list[str], example_inputs, index: int, calib) -> tuple:
    missing = [n for n in names if n not in batch]
    if missing:
        raise InputError(
            f"calibration batch {index} of {calib.description} lacks input(s) "
            f"{', '.join(missing)}; it has {', '.join(batch)}"
        )
    tensors = []
    for i, name in enumerate(names):
        value = torch.from_numpy(batch[name])
        example = example_inputs[i] if example_inputs is not None else None
        if isinstance(example, torch.Tensor):
            if value.dim() != example.dim() or value.shape[1:] != example.shape[1:]:
                raise InputError(
                    f"calibration batch {index} input '{name}' of "
                    f"{calib.description} has shape {tuple(value.shape)}, the model "
                    f"takes {('N',) + tuple(example.shape[1:])}; fix the data"
                )
            value = value.to(example.dtype)
        elif value.is_floating_point():
            value = value.float()
        tensors.append(value)
    return tuple(tensors)


def _batch_error(exc, index, calib, inputs, names, example_inputs) -> InputError:
    shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, inputs, strict=True))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(
        f"calibration batch {index} of {calib.description} ({shapes}) failed in the model: {first}"
    )
