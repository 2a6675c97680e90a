"""`build_trt_engines.sh` of a set compile: one trtexec call per TensorRT file of the set.

The files are strongly typed (the strong_typing pass: fp16 tensors, fp16 Q/DQ scales, INT8
through Q/DQ), so the precision is in the file, never in build flags. What differs by TensorRT
version is only how to ask for that: TensorRT 11 is always strongly typed and refuses the old
precision flags; TensorRT 10 (DRIVE, Jetson Orin) needs --stronglyTyped, or it would build the
file weakly typed; older versions cannot build fp16 Q/DQ scales (opset 19) at all. The script reads
the version from `trtexec --version`; TRT_MAJOR overrides it (cross builds, or a trtexec that
prints no version).
"""

from __future__ import annotations

import shlex

from bevcc.config import FileSpec

SCRIPT_NAME = "build_trt_engines.sh"

# The flags each TensorRT major version needs for a strongly typed file.
TYPING_FLAGS = {"10": ["--stronglyTyped"], "11+": []}

# bash: sets `major` from TRT_MAJOR or from what trtexec prints. trtexec states its version as
# "TensorRT v110400" (major*10000 + minor*100 + patch; 8.x printed v8601) or "10.3.0".
_DETECT_VERSION = r"""
if [[ -n "${TRT_MAJOR:-}" ]]; then
    major=$TRT_MAJOR
else
    version_text=$("$TRTEXEC" --version 2>&1 || true)
    major=""
    if [[ $version_text =~ TensorRT[^0-9]*v([0-9]+) ]]; then
        number=${BASH_REMATCH[1]}
        if (( ${#number} >= 6 )); then major=$(( 10#$number / 10000 )); else major=$(( 10#$number / 1000 )); fi
    elif [[ $version_text =~ ([0-9]+)\.[0-9]+\.[0-9]+ ]]; then
        major=${BASH_REMATCH[1]}
    fi
    if [[ -z $major ]]; then
        echo "cannot read TensorRT's version from '$TRTEXEC --version'; set TRT_MAJOR=10 or TRT_MAJOR=11" >&2
        exit 2
    fi
fi
if ! [[ $major =~ ^[0-9]+$ ]]; then
    echo "TRT_MAJOR=$major is not a TensorRT major version; set TRT_MAJOR=10 or TRT_MAJOR=11" >&2
    exit 2
elif (( major >= 11 )); then
    TYPING=()                  # always strongly typed; the precision flags are gone
elif (( major == 10 )); then
    TYPING=(--stronglyTyped)   # without it TensorRT 10 would build the files weakly typed
else
    echo "TensorRT $major cannot build these strongly typed files (fp16 Q/DQ scales, opset 19): use TensorRT 10 or newer" >&2
    exit 2
fi
"""


def engine_name(spec: FileSpec) -> str:
    return f"{spec.name}.plan"


def trtexec_script(files: list[FileSpec], header: str) -> str:
    """The script text: bash, runnable from any directory, `TRTEXEC` and `TRT_MAJOR`
    overridable."""
    engines = [s for s in files if s.precision != "libspconv"]
    lines = [
        "#!/usr/bin/env bash",
        f"# {header}",
        "# Builds one TensorRT engine (<name>.plan) per ONNX file here; each build logs to",
        "# <name>.build.log. The files are strongly typed: each layer builds in its tensors'",
        "# types (INT8 through Q/DQ, fp16, fp32 where the report says why), so no precision",
        "# flags. Use another trtexec with TRTEXEC=/path/to/trtexec; TRT_MAJOR=10 or 11 skips",
        "# asking it for its version (cross builds).",
        "set -euo pipefail",
        'cd "$(dirname "${BASH_SOURCE[0]}")"',
        "TRTEXEC=${TRTEXEC:-trtexec}",
        *_DETECT_VERSION.strip("\n").splitlines(),
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
            *shlex.split(spec.trtexec),
        ]
        lines += [
            f'echo "[{done}/{len(engines)}] {engine_name(spec)} ({spec.precision})"',
            # ${A[@]+"${A[@]}"}: an empty array under `set -u` on bash before 4.4
            (
                f'"$TRTEXEC" {" ".join(shlex.quote(f) for f in flags)} '
                f'${{TYPING[@]+"${{TYPING[@]}}"}} > {log} 2>&1 \\'
            ),
            (
                f'    || {{ echo "building {engine_name(spec)} failed; see {spec.name}'
                '.build.log" >&2; exit 1; }'
            ),
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"
