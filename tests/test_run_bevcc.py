"""bevcc.testing.run_bevcc forks the test process where it can (no interpreter start-up, no
torch import): the command must not be able to tell. Each check compares a forked command with
the same command in a fresh interpreter, which any `env_extra` asks for."""

from __future__ import annotations

import gc
import os
import stat

import pytest

import bevcc
from bevcc import Pass, PassResult, plugins
from bevcc.testing import NO_PLUGINS, run_bevcc
from bevcc.testing.cli import _can_fork

FRESH = {"BEVCC_TEST_FORK": "0"}  # any extra variable means a fresh interpreter

pytestmark = pytest.mark.skipif(not _can_fork(), reason="this process cannot fork commands")


def _both(*args, env_extra=None, **kwargs):
    forked = run_bevcc(*args, env_extra=env_extra, **kwargs)
    fresh = run_bevcc(*args, env_extra={**(env_extra or {}), **FRESH}, **kwargs)
    assert forked.args[0] == "bevcc" and fresh.args[0].endswith(os.sep + "bevcc")
    return forked, fresh


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("passes",), {}),
        (("passes",), NO_PLUGINS),
        (("compile", "tiny_cnn", "--pipeline", "fx(no_such_pass)", "-o", "x.onnx"), {}),
        (("lint", "missing.onnx"), {}),
        (("compile", "--no-such-flag"), {}),
        (("compile", "tiny_cnn", "-o", "x.onnx"), {"BEVCC_PROGRESS": "loud"}),
    ],
    ids=[
        "listing",
        "listing without plugins",
        "pipeline error",
        "missing file",
        "argparse error",
        "bad progress variable",
    ],
)
def test_a_forked_command_prints_and_exits_as_a_fresh_process(tmp_path, args, env):
    forked, fresh = _both(*args, env_extra=env, cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )


def test_bevccs_own_variables_reach_a_forked_command_and_others_a_fresh_one():
    # bevcc reads BEVCC_* when the command runs: the fork sets them in its own environment
    before = dict(os.environ)
    forked = run_bevcc("passes", env_extra=NO_PLUGINS)
    assert forked.args[0] == "bevcc" and forked.returncode == 0
    assert "remove_identity" not in forked.stdout  # the example plugin's pass
    assert dict(os.environ) == before  # set in the command's process, not this one
    # any other variable may be read at start-up (PYTHONPATH, OMP_NUM_THREADS)
    fresh = run_bevcc("passes", env_extra={**NO_PLUGINS, "NOTHING": "1"})
    assert fresh.args[0].endswith(os.sep + "bevcc") and fresh.stdout == forked.stdout


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


def _threaded_session():
    """An onnxruntime session with its own pool of 4 threads, which has run once: its threads
    now wait on the pool's condition variables."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 4
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    session.run(None, {"x": np.ones((64, 64), np.float32)})
    return session


def test_the_test_processes_garbage_is_not_collected_in_the_command(tmp_path):
    """A session left in a reference cycle is garbage the test process has not collected yet.
    The fork copies it without its pool's threads: had the command's collection freed it, its
    destructor would wait on them (measured: the command crashed with SIGSEGV at once, or hung
    in pthread_cond_destroy until the test timed out). The collector is paused here so the
    garbage is still young when the fork copies it; the compile collects the young generations
    as it ends (bevcc/compiler.py)."""

    class Cycle:
        pass

    gc.disable()
    try:
        garbage = Cycle()
        garbage.session, garbage.itself = _threaded_session(), garbage
        del garbage
        forked = run_bevcc("compile", "tiny_cnn", "-o", "model.onnx", cwd=tmp_path, timeout=60)
    finally:
        gc.enable()
    assert forked.returncode == 0, forked.stderr
    assert (tmp_path / "model.onnx").is_file()
