"""build_trt_engines.sh against stand-in trtexec executables of each TensorRT version: the
arguments each build gets (TensorRT 11: none for precision; 10: --stronglyTyped), the clear
refusal of older versions and of a version it cannot read, and the TRT_MAJOR override."""

from __future__ import annotations

import os
import subprocess

import pytest

from bevcc.config import FileSpec
from bevcc.deploy.trtexec_script import trtexec_script

FILES = [
    FileSpec("camera", "m:a", "p", "int8", trtexec="--memPoolSize=workspace:2048"),
    FileSpec("head", "m:b", "p", "fp16"),
    FileSpec("lidar", "m:c", "p", "libspconv"),
]

# What trtexec prints about its version, in the forms TensorRT releases use.
BANNERS = {
    "11.4": "&&&& RUNNING TensorRT.trtexec [TensorRT v110400] [b12] # trtexec --version",
    "10.3": "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] [b17] # trtexec --version",
    "10.16 dotted": "TensorRT version: 10.16.0",
    "8.6": "&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec --version",
    "none": "trtexec: unknown option",
}


def _run(tmp_path, banner: str, **env):
    directory = tmp_path / "set"
    directory.mkdir(exist_ok=True)
    script = directory / "build_trt_engines.sh"
    script.write_text(trtexec_script(FILES, "test"))
    script.chmod(0o755)
    fake = tmp_path / "trtexec"
    # --version prints the banner; a build records its arguments in the engine it "writes".
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'if [[ $1 == --version ]]; then echo "{banner}"; exit 1; fi\n'
        'for a in "$@"; do case $a in --saveEngine=*) echo "$@" > "${a#--saveEngine=}";; '
        "esac; done\n"
    )
    fake.chmod(0o755)
    proc = subprocess.run(
        [str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TRTEXEC": str(fake), **env},
    )
    args = {
        name: (directory / f"{name}.plan").read_text().split()
        for name in ("camera", "head")
        if (directory / f"{name}.plan").exists()
    }
    return proc, args


CAMERA = ["--onnx=camera.onnx", "--saveEngine=camera.plan", "--memPoolSize=workspace:2048"]
HEAD = ["--onnx=head.onnx", "--saveEngine=head.plan"]


@pytest.mark.parametrize(
    "version, typing",
    [("11.4", []), ("10.3", ["--stronglyTyped"]), ("10.16 dotted", ["--stronglyTyped"])],
)
def test_each_version_gets_its_typing_flags_and_no_precision_flags(tmp_path, version, typing):
    proc, args = _run(tmp_path, BANNERS[version])
    assert proc.returncode == 0, proc.stderr
    assert args == {"camera": CAMERA + typing, "head": HEAD + typing}
    assert not (tmp_path / "set" / "lidar.plan").exists()  # libspconv loads its file itself


@pytest.mark.parametrize("version", ["8.6", "none"])
def test_an_older_or_unreadable_version_is_one_clear_line_and_builds_nothing(tmp_path, version):
    proc, args = _run(tmp_path, BANNERS[version])
    assert proc.returncode == 2 and args == {}
    (line,) = proc.stderr.splitlines()
    assert "TRT_MAJOR" in line if version == "none" else "use TensorRT 10 or newer" in line


def test_trt_major_overrides_what_trtexec_says(tmp_path):
    """Cross builds: the trtexec at hand is not the one the engines are for."""
    proc, args = _run(tmp_path, BANNERS["11.4"], TRT_MAJOR="10")
    assert proc.returncode == 0, proc.stderr
    assert args["head"] == [*HEAD, "--stronglyTyped"]
    proc, args = _run(tmp_path, BANNERS["none"], TRT_MAJOR="eleven")
    assert proc.returncode == 2 and "not a TensorRT major version" in proc.stderr


def test_the_script_names_no_weak_typing_flag():
    text = trtexec_script(FILES, "test")
    for flag in ("--int8", "--fp16", "--best", "--calib"):
        assert flag not in text
