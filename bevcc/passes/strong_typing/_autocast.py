"""The rewrite itself, by ModelOpt AutoCast: given the nodes that stay fp32, it converts the rest
to fp16 (initializers, Q/DQ scales, value types), inserts the Casts between the two regions and at
the interface, and raises the opset to 19, the first that allows fp16 Q/DQ scales.

Why AutoCast and not a bevcc rewrite: NVIDIA maintains it as the route into TensorRT 11's strong
typing, and it knows each op's type constraints (which inputs must stay fp32 or integer, how
Q/DQ scales follow their neighbours); bevcc supplies what AutoCast's own classifier lacks, the
ranges on the user's calibration data and a reason per fp32 node (docs/strong_typing.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
from pathlib import Path

import numpy as np
import onnx

from bevcc.errors import UsageError


def to_fp16(model: onnx.ModelProto, fp32_nodes: list[str], keep_io_fp32: bool) -> onnx.ModelProto:
    try:
        from modelopt.onnx.autocast.convert import convert_to_mixed_precision
    except ImportError as exc:
        raise UsageError(
            "strong_typing needs ModelOpt AutoCast: pip install 'bevcc[modelopt]' "
            f"(import failed: {exc})"
        ) from exc
    exclude = [f"^{re.escape(name)}$" for name in fp32_nodes]
    with tempfile.TemporaryDirectory(prefix="bevcc-autocast-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path))
        # AutoCast logs every decision and its opset upgrade; bevcc reports its own summary.
        # data_max/init_max = inf: no range rule of its own and no reference run on random
        # inputs; the ranges were checked on the calibration data, and `exclude` holds the result.
        with _quiet():
            return convert_to_mixed_precision(
                str(path),
                low_precision_type="fp16",
                nodes_to_exclude=exclude or None,
                data_max=np.inf,
                init_max=np.inf,
                keep_io_types=keep_io_fp32,
            )


@contextlib.contextmanager
def _quiet():
    # modelopt sets a level on each of its loggers and prints through a handler bound to the
    # real stdout: every one of them is raised to ERROR for the call.
    names = [n for n in logging.root.manager.loggerDict if n.startswith(("modelopt", "onnxscript"))]
    loggers = [logging.getLogger(n) for n in ["modelopt", "onnxscript", *names]]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
