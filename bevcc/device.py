"""Where models run while a compile calibrates or measures them: `--device cpu|cuda|cuda:N|auto`.

The device is chosen once per compile (`bevcc.compile(device=...)`, the CLI's `--device`, a set
config's `device` key) and reaches the passes through their PassContext, never a global. A pass
that runs the model moves it there for that run and back to the CPU after it (`running_on`):
between passes, and in everything a compile writes, the model lives on the CPU, so the files do
not depend on the device that calibrated them. Batches move to the device one at a time
(`to_device`), as each is used. ONNX passes run onnxruntime with the CUDA execution provider
when the device is CUDA and the installed onnxruntime has it (`ort_providers`), else on the CPU.

Parsing a device needs no torch (the CLI checks it at once); resolving one imports torch.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from bevcc.errors import UsageError

__all__ = [
    "ACCEPTED",
    "DeviceError",
    "check_device",
    "device_of",
    "ort_providers",
    "resolve_device",
    "running_on",
    "to_device",
]

ACCEPTED = "cpu, cuda, cuda:N (N a GPU index) or auto"
AUTO = "auto"
_FORM = re.compile(r"cpu|auto|cuda(?::\d+)?")


class DeviceError(UsageError, ValueError):
    """A device that is malformed or not on this machine: a usage error on the command line
    (exit 2) and a ValueError to Python callers."""


def check_device(text) -> str:
    """`text` if it is one of the accepted forms (no torch needed), else one DeviceError."""
    if not isinstance(text, str) or not _FORM.fullmatch(text):
        raise DeviceError(f"device {text!r} is not one of {ACCEPTED}")
    return text


def resolve_device(text: str | None = None) -> str:
    """The device a compile runs on: `auto` (the default) is cuda where torch sees a GPU, else
    cpu. A CUDA device this machine lacks is one DeviceError, raised before any model loads."""
    text = check_device(AUTO if text is None else text)
    if text == "cpu":
        return text
    import torch

    available = torch.cuda.is_available()
    if text == AUTO:
        return "cuda" if available else "cpu"
    if not available:
        build = torch.version.cuda
        why = (
            f"torch {torch.__version__} is a CPU-only build"
            if build is None
            else f"torch {torch.__version__} (CUDA {build}) sees no GPU"
        )
        raise DeviceError(f"device {text!r}: CUDA is not available here ({why}); use cpu or auto")
    index = int(text.partition(":")[2] or torch.cuda.current_device())
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(
            f"device {text!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}"
        )
    return text


def device_of(context) -> str:
    """The device a pass runs the model on: its context's (the CPU without one)."""
    return getattr(context, "device", None) or "cpu"


@contextmanager
def running_on(module, device: str) -> Iterator:
    """`module` on `device` for the block and back on the CPU after it, also when the block
    fails. A no-op on the CPU."""
    if device == "cpu":
        yield module
        return
    module.to(device)
    try:
        yield module
    finally:
        module.to("cpu")


def to_device(tensor, device: str):
    """One input on its way into the model: left alone on the CPU (no copy), else moved."""
    if device == "cpu" or not hasattr(tensor, "to"):
        return tensor
    return tensor.to(device, non_blocking=True)


_warned_cpu_fallback = False


def ort_providers(device: str) -> list:
    """onnxruntime's execution providers for `device`: the CUDA provider (on the GPU `device`
    names) with the CPU one behind it for the operators it lacks, when the device is CUDA and
    this onnxruntime has the CUDA provider; otherwise the CPU provider alone (once per process
    a warning says so when a CUDA device was asked for)."""
    global _warned_cpu_fallback
    if device == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    if not _warned_cpu_fallback:
        _warned_cpu_fallback = True
        warnings.warn(
            f"device {device}: this onnxruntime ({ort.__version__}) has no CUDA execution "
            "provider, so ONNX passes run on the CPU (install onnxruntime-gpu to run them on "
            "the GPU)",
            stacklevel=2,
        )
    return ["CPUExecutionProvider"]
