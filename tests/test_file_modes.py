"""Every file and directory bevcc writes gets the user's umask, as `open` and `mkdir` would give:
written 0600 (a temporary file renamed into place), a model could not be read by trtexec run
as another user or in a container. The engine script stays executable
(0755 under umask 022, 0700 under 077)."""

from __future__ import annotations

import stat

import pytest

from bevcc.testing import NO_PLUGINS
from tests.conftest import run_bevcc

CALIB = "bevcc.reference.tiny_cnn:calibration_batches"


def modes(root) -> dict[str, int]:
    """Permission bits of `root` and of everything under it, by path relative to root's parent."""
    base = root.parent
    return {
        str(p.relative_to(base)): stat.S_IMODE(p.stat().st_mode)
        for p in [root, *sorted(root.rglob("*"))]
    }


@pytest.mark.parametrize(
    ("umask", "file_mode"), [(0o022, 0o644), (0o027, 0o640)], ids=["umask 022", "umask 027"]
)
def test_a_compiled_file_has_the_users_umask(tmp_path, umask, file_mode):
    for name, pipeline in (("model.onnx", "fx(dce),export"), ("model.pt", "fx(dce)")):
        out = tmp_path / name
        proc = run_bevcc(
            "compile", "tiny_cnn", "--pipeline", pipeline, "-o", out,
            env_extra=NO_PLUGINS, umask=umask,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert stat.S_IMODE(out.stat().st_mode) == file_mode, name


@pytest.mark.parametrize(
    ("umask", "directory", "script", "file"),
    [(0o022, 0o755, 0o755, 0o644), (0o077, 0o700, 0o700, 0o600)],
    ids=["umask 022", "umask 077"],
)
def test_a_set_directory_its_files_and_script_have_the_users_umask(
    tmp_path, umask, directory, script, file
):
    # the script is executable for whoever the umask lets read it: a literal 0755 handed it to
    # everyone under umask 077
    (tmp_path / "set.toml").write_text(
        f'output = "build/set"\ncalib = "{CALIB}"\n\n[[files]]\nname = "camera"\n'
        'input = "tiny_cnn"\npipeline = "fx(dce),export"\nprecision = "fp32"\n'
    )
    proc = run_bevcc(
        "compile", "--config", tmp_path / "set.toml", env_extra=NO_PLUGINS, umask=umask
    )
    assert proc.returncode == 0, proc.stderr
    assert modes(tmp_path / "build" / "set") == {
        "set": directory,
        "set/build_trt_engines.sh": script,
        "set/camera.onnx": file,
        "set/report.json": file,
        "set/report.md": file,
    }


def test_a_reproducer_directory_has_the_users_umask(tmp_path):
    # qdq_insert without calibration data fails: the reproducer holds the IR before it
    proc = run_bevcc(
        "compile", "tiny_cnn", "--pipeline", "fx(dce,qdq_insert),export",
        "--reproducer", tmp_path / "repro", "-o", tmp_path / "never.onnx",
        env_extra=NO_PLUGINS, umask=0o022,
    )  # fmt: skip
    assert proc.returncode != 0 and "qdq_insert needs calibration data" in proc.stderr
    assert modes(tmp_path / "repro") == {
        "repro": 0o755,
        "repro/README.txt": 0o644,
        "repro/input.pt": 0o644,
        "repro/pipeline.txt": 0o644,
    }


def test_sensitivity_reports_have_the_users_umask(tmp_path):
    proc = run_bevcc(
        "sensitivity", "tiny_cnn", "--calib", CALIB, "--top-k", "1", "--eval-batches", "1",
        "-o", tmp_path / "sens", env_extra=NO_PLUGINS, umask=0o022,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = modes(tmp_path / "sens")
    assert len(found) > 3, found  # the model, the report (json, md, chart), the disable list
    assert found == dict.fromkeys(found, 0o644) | {"sens": 0o755}
