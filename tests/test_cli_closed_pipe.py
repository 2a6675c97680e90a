"""A reader that stops early (`bevcc lint FILE | head -1`) ends bevcc as it ends coreutils: no
message, exit 141 (128 + SIGPIPE, what a shell shows for `seq 1000000 | head -1`), never an
"internal error"."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bevcc.testing import scaled_timeout

BEVCC = os.path.join(os.path.dirname(sys.executable), "bevcc")
SIGPIPE_EXIT = 141
LAYERS = 2000  # lint lists every float layer: ~170 kB, more than a pipe holds (64 kB)


def conv_chain(path):
    """A float model of LAYERS 1x1 convs with module-style weight names."""
    nodes, weights, previous = [], [], "x"
    for i in range(LAYERS):
        weight = f"backbone.stage_{i // 100}.block_{i % 100}.conv.weight"
        weights.append(numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), weight))
        nodes.append(
            helper.make_node(
                "Conv", [previous, weight], [f"t{i}"], name=f"/stage_{i // 100}/{i % 100}/Conv"
            )
        )
        previous = f"t{i}"
    graph = helper.make_graph(
        nodes,
        "conv_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, 2, 4, 4])],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def piped(args: list[str], reader: str, tmp_path) -> tuple[int, str, str]:
    """`bevcc ARGS | READER` in a shell: bevcc's exit status and stderr, the reader's output."""
    err = tmp_path / "stderr.txt"
    command = f"{shlex.join([BEVCC, *args])} 2>{shlex.quote(str(err))} | {reader}"
    proc = subprocess.run(
        ["bash", "-c", f"{command}; exit ${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
        timeout=scaled_timeout(120),
        check=False,
    )
    return proc.returncode, err.read_text(), proc.stdout


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["human", "json"])
def test_lint_into_head_ends_quietly(tmp_path, json_flag):
    path = conv_chain(tmp_path / "many.onnx")
    status, stderr, first = piped(["lint", *json_flag, str(path)], "head -1", tmp_path)
    assert (status, stderr) == (SIGPIPE_EXIT, "")
    assert first == ("{\n" if json_flag else f"bevcc lint {path}\n")


def test_passes_into_a_reader_that_reads_nothing_ends_quietly(tmp_path):
    # `bevcc passes | head -1` cannot show it: the whole table fits in the pipe before head
    # reads; a reader that closes at once does (the write is refused as the listing is printed)
    status, stderr, out = piped(["passes"], "head -c 0", tmp_path)
    assert (status, stderr, out) == (SIGPIPE_EXIT, "", "")


def test_a_full_read_still_exits_0(tmp_path):
    status, stderr, out = piped(["passes"], "cat", tmp_path)
    assert (status, stderr) == (0, "")
    assert out.startswith("NAME ")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["passes"], ["passes", "--json"]], ids=["human", "json"])
def test_a_full_disk_is_one_error_line_not_an_internal_error(args):
    """/dev/full refuses every write with ENOSPC, as a full disk does: the machine's state, told
    in one line (it was 'internal error', exit 70)."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [BEVCC, *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=scaled_timeout(120),
            check=False,
        )
    assert proc.returncode == 1
    line = (
        "bevcc: error: cannot write standard output: No space left on device; free space "
        "there or write somewhere else"
    )
    assert proc.stderr.splitlines() == [line]
