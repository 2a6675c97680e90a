"""bevcc.testing.run_bevcc forks the test process where it can (no interpreter start-up, no
torch import): the command must not be able to tell. Each check compares a forked command with
the same command in a fresh interpreter, which any `env_extra` asks for."""

from __future__ import annotations

import os
import stat

import pytest

import bevcc
from bevcc import Pass, PassResult, plugins
from bevcc.testing import run_bevcc
from bevcc.testing.cli import _can_fork

FRESH = {"BEVCC_TEST_FORK": "0"}  # any extra variable means a fresh interpreter

pytestmark = pytest.mark.skipif(not _can_fork(), reason="this process cannot fork commands")


def _both(*args, **kwargs):
    forked, fresh = run_bevcc(*args, **kwargs), run_bevcc(*args, env_extra=FRESH, **kwargs)
    assert forked.args[0] == "bevcc" and fresh.args[0].endswith(os.sep + "bevcc")
    return forked, fresh


@pytest.mark.parametrize(
    "args",
    [
        ("passes",),
        ("compile", "tiny_cnn", "--pipeline", "fx(no_such_pass)", "-o", "x.onnx"),
        ("lint", "missing.onnx"),
        ("compile", "--no-such-flag"),
    ],
    ids=["listing", "pipeline error", "missing file", "argparse error"],
)
def test_a_forked_command_prints_and_exits_as_a_fresh_process(tmp_path, args):
    forked, fresh = _both(*args, cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )


def test_a_pass_the_test_process_registered_does_not_reach_the_command():
    class OnlyInTheTest(Pass):
        name, ir, summary = "only_in_the_test", "fx", "registered by this test alone"

        def call(self, ir):
            return PassResult(ir, modified=False)

    bevcc.register_pass(OnlyInTheTest)
    try:
        forked = run_bevcc("passes")
    finally:
        plugins.reset()  # the next test loads the plugins afresh
    assert forked.returncode == 0 and "dce" in forked.stdout
    assert "only_in_the_test" not in forked.stdout


def test_the_command_gets_its_directory_and_umask(tmp_path):
    forked = run_bevcc("compile", "tiny_cnn", "-o", "model.onnx", cwd=tmp_path, umask=0o077)
    assert forked.returncode == 0, forked.stderr
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == 0o600
    assert os.getcwd() != str(tmp_path)  # the test process stayed where it was
