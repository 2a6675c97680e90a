"""`build_trt_engines.sh` of a set compile: one trtexec call per TensorRT file of the set."""

from __future__ import annotations

import shlex

from bevcc.config import FileSpec

SCRIPT_NAME = "build_trt_engines.sh"

# A Q/DQ file carries its INT8 decisions itself; --int8 lets TensorRT honour them and --fp16 gives
# the layers kept float (sensitivity_disable, unquantized ops) fp16 kernels instead of fp32.
PRECISION_FLAGS = {"int8": ["--int8", "--fp16"], "fp16": ["--fp16"], "fp32": []}


def engine_name(spec: FileSpec) -> str:
    return f"{spec.name}.plan"


def trtexec_script(files: list[FileSpec], header: str) -> str:
    """The script text: bash, runnable from any directory, `TRTEXEC` overridable."""
    engines = [s for s in files if s.precision != "libspconv"]
    lines = [
        "#!/usr/bin/env bash",
        f"# {header}",
        "# Builds one TensorRT engine (<name>.plan) per ONNX file here; each build logs to",
        "# <name>.build.log. Use another trtexec with TRTEXEC=/path/to/trtexec.",
        "set -euo pipefail",
        'cd "$(dirname "${BASH_SOURCE[0]}")"',
        "TRTEXEC=${TRTEXEC:-trtexec}",
        "",
    ]
    done = 0
    for spec in files:
        onnx_file = f"{spec.name}.onnx"
        if spec.precision == "libspconv":
            lines += [
                (
                    f"# {onnx_file}: a libspconv file; libspconv loads it directly, no "
                    "engine is built"
                ),
                "",
            ]
            continue
        done += 1
        log = shlex.quote(f"{spec.name}.build.log")
        flags = [
            f"--onnx={onnx_file}",
            f"--saveEngine={engine_name(spec)}",
            *PRECISION_FLAGS[spec.precision],
            *shlex.split(spec.trtexec),
        ]
        lines += [
            f'echo "[{done}/{len(engines)}] {engine_name(spec)} ({spec.precision})"',
            f'"$TRTEXEC" {" ".join(shlex.quote(f) for f in flags)} > {log} 2>&1 \\',
            (
                f'    || {{ echo "building {engine_name(spec)} failed; see {spec.name}'
                '.build.log" >&2; exit 1; }'
            ),
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"
