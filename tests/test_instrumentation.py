"""Instrumentations around the pass manager: hook order and arguments, the checks as
instrumentations, --print-ir-after-failure and --reproducer through the real CLI."""

import io
import os
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest

import bevcc
from bevcc import Pass, PassResult
from bevcc.errors import PassError
from bevcc.ir.fx import FxIR
from bevcc.ir.onnx import OnnxIR
from bevcc.pm.instrument import Instrumentation
from bevcc.pm.pipeline import parse_pipeline
from bevcc.pm.reproducer import Reproducer, pipeline_from
from tests.conftest import run_bevcc

# A plugin module the CLI subprocesses load (BEVCC_PLUGINS): one ONNX pass that fails on
# purpose, naming what it saw, and one that breaks the graph and says so honestly.
FAILING_PASSES = """
import bevcc


class Boom(bevcc.Pass):
    name = "boom"
    summary = "Fail on purpose, naming the graph and the calibration data it was given."
    ir = "onnx"

    def call(self, ir):
        calib = self.context.calib
        quantize = sum(node.op == "QuantizeLinear" for node in ir.graph.nodes)
        raise bevcc.InputError(f"boom on {ir.node_count()} nodes ({quantize} QuantizeLinear), "
                               f"calibration data {calib.description if calib else 'none'}")


class Breaker(bevcc.Pass):
    name = "breaker"
    summary = "Rename the first node's op to one no opset has."
    ir = "onnx"

    def call(self, ir):
        ir.graph.nodes[0].op = "NoSuchOp"
        return bevcc.PassResult(ir, modified=True)


class FloatOnly(bevcc.Pass):
    name = "float_only"
    summary = "Fail where no QuantizeLinear is: in an FP16 set, which drops the quantizing passes."
    ir = "onnx"

    def call(self, ir):
        if not any(node.op == "QuantizeLinear" for node in ir.graph.nodes):
            raise bevcc.InputError("no QuantizeLinear here")
        return bevcc.PassResult(ir, modified=False)


@bevcc.hookimpl
def bevcc_register_passes(registry):
    registry.add_pass(Boom)
    registry.add_pass(Breaker)
    registry.add_pass(FloatOnly)
"""


class Recorder(Instrumentation):
    """Appends every hook call to a shared log, tagged, so several recorders show their order."""

    def __init__(self, tag, log):
        self.tag, self.log = tag, log

    def before_pass(self, step, ir):
        self.log.append((self.tag, "before", step.label, ir.kind))

    def after_pass(self, step, ir, result):
        assert ir is result.ir
        self.log.append((self.tag, "after", step.label, ir.kind, result.modified))

    def after_failure(self, step, ir, error, returned):
        self.log.append((self.tag, "failure", step.label, str(error), returned))
        self.failed_ir = ir

    def after_pipeline(self, ir, records):
        self.log.append((self.tag, "pipeline", ir.kind, [r.name for r in records]))


def fx_pass(name, body):
    return type(
        name,
        (Pass,),
        {"name": name, "summary": "test", "ir": "fx", "call": lambda self, ir: body(ir)},
    )


def onnx_pass(name, body):
    return type(
        name,
        (Pass,),
        {"name": name, "summary": "test", "ir": "onnx", "call": lambda self, ir: body(ir)},
    )


def _raise(ir):
    raise bevcc.InputError("no weight on conv1; re-export with weights")


def _hide_a_change(ir):
    if ir.kind == "fx":
        next(iter(ir.module.parameters())).data.mul_(2.0)
    else:
        ir.graph.nodes[0].name = "renamed"
    return PassResult(ir, modified=False)


def _claim_a_change(ir):
    return PassResult(ir, modified=True)


def test_hooks_see_every_step_in_order(registry, tiny):
    log = []
    bevcc.compile(
        tiny,
        pipeline="fx(dce),export,onnx(cleanup,check)",
        registry=registry,
        instrumentations=[Recorder("a", log), Recorder("b", log)],
    )
    steps = [
        ("fx(dce)", "fx", "fx", False),
        ("export", "fx", "onnx", True),
        ("onnx(cleanup)", "onnx", "onnx", False),
        ("onnx(check)", "onnx", "onnx", False),
    ]
    expected = []
    for label, before, after, modified in steps:
        expected += [(t, "before", label, before) for t in "ab"]
        expected += [(t, "after", label, after, modified) for t in "ab"]
    names = ["fx(dce)", "export", "onnx(cleanup)", "onnx(check)"]
    expected += [(t, "pipeline", "onnx", names) for t in "ab"]
    assert log == expected


def test_a_failing_pass_gets_after_failure_and_nothing_after_it(registry, tiny):
    registry.add_pass(fx_pass("boom", _raise))
    log = []
    with pytest.raises(PassError) as info:
        bevcc.compile(
            tiny,
            pipeline="fx(dce,boom),export",
            registry=registry,
            instrumentations=[Recorder("a", log)],
        )
    message = "pass 'boom' failed after [dce]: no weight on conv1; re-export with weights"
    assert str(info.value) == message
    assert log == [
        ("a", "before", "fx(dce)", "fx"),
        ("a", "after", "fx(dce)", "fx", False),
        ("a", "before", "fx(boom)", "fx"),
        ("a", "failure", "fx(boom)", message, False),
    ]


_LIE = "its PassResult must say whether it changed the IR"


@pytest.mark.parametrize(
    "kind, pipeline, body, message",
    [
        (
            "fx",
            "fx(dce,liar)",
            _hide_a_change,
            f"pass 'liar' reported modified=False but the IR changed (after [dce]); {_LIE}",
        ),
        (
            "onnx",
            "fx(dce),export,onnx(liar)",
            _hide_a_change,
            f"pass 'liar' reported modified=False but the IR changed (after [dce, export]); {_LIE}",
        ),
        (
            "onnx",
            "fx(dce),export,onnx(liar)",
            _claim_a_change,
            f"pass 'liar' reported modified=True but the IR did not change (after [dce, export]); {_LIE}",
        ),
    ],
)
def test_the_modified_check_fires_and_hands_the_returned_ir_to_the_hooks(
    registry, tiny, kind, pipeline, body, message
):
    registry.add_pass((fx_pass if kind == "fx" else onnx_pass)("liar", body))
    log = []
    recorder = Recorder("a", log)
    with pytest.raises(PassError) as info:
        bevcc.compile(tiny, pipeline=pipeline, registry=registry, instrumentations=[recorder])
    assert str(info.value) == message
    label = f"{kind}(liar)"
    assert log[-2:] == [("a", "before", label, kind), ("a", "failure", label, message, True)]
    assert recorder.failed_ir.kind == kind


def test_the_modified_check_without_the_verifier_sees_an_in_place_change(registry, tiny):
    # The fingerprint taken before a pass must not be reused as its "after" when the verifier,
    # which otherwise takes that fingerprint, is off.
    registry.add_pass(fx_pass("liar", _hide_a_change))
    with pytest.raises(
        PassError,
        match=r"^pass 'liar' reported modified=False but the IR "
        r"changed \(after \[dce\]\)",
    ):
        bevcc.compile(
            tiny, pipeline="fx(dce,liar)", registry=registry, verify_each=False, check_modified=True
        )
    result = bevcc.compile(
        tiny, pipeline="fx(dce,liar)", registry=registry, verify_each=True, check_modified=False
    )
    assert [r.modified for r in result.records] == [False, False]


def test_the_verifier_fires_before_the_modified_check(registry, tiny):
    def _break(ir):
        ir.graph.nodes[0].op = "NoSuchOp"
        return PassResult(ir, modified=False)  # a lie too, but the broken graph is named first

    registry.add_pass(onnx_pass("breaker", _break))
    log = []
    with pytest.raises(PassError) as info:
        bevcc.compile(
            tiny,
            pipeline="fx(dce),export,onnx(breaker)",
            registry=registry,
            instrumentations=[Recorder("a", log)],
        )
    assert str(info.value) == (
        "pass 'breaker' broke the IR (after [dce, export]): onnx graph is "
        "invalid: No Op registered for NoSuchOp with domain_version of 17"
    )
    assert log[-1] == ("a", "failure", "onnx(breaker)", str(info.value), True)


@pytest.mark.parametrize(
    "index, rest",
    [
        (0, "fx(dce,bn_fold{sparse_bias=inside}),export{opset=17},onnx(cleanup,check)"),
        (1, "fx(bn_fold{sparse_bias=inside}),export{opset=17},onnx(cleanup,check)"),
        (2, "export{opset=17},onnx(cleanup,check)"),
        (3, "onnx(cleanup,check)"),
        (4, "onnx(check)"),
    ],
)
def test_the_reproducer_pipeline_starts_at_the_failing_step(index, rest):
    text = "fx(dce,bn_fold{sparse_bias=inside}),export{opset=17},onnx(cleanup,check)"
    assert pipeline_from(parse_pipeline(text), index).text() == rest


@pytest.fixture
def failing_passes(tmp_path):
    """Environment for CLI runs that load the failing test passes, with a private TMPDIR so the
    tests see that the reproducer's scratch files are removed."""
    (tmp_path / "failing_passes.py").write_text(FAILING_PASSES)
    (tmp_path / "scratch").mkdir()
    return {
        # in front of the caller's path (a worktree's checkout over the installed one)
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
        "BEVCC_PLUGINS": "failing_passes",
        "TMPDIR": str(tmp_path / "scratch"),
    }


def _onnx_dump_after(tiny_onnx, registry, pipeline, edit=None):
    ir = bevcc.compile(tiny_onnx, pipeline=pipeline, registry=registry).ir
    if edit is not None:
        edit(ir)
    return ir.dump()


def test_print_ir_after_failure_when_the_pass_raised(tmp_path, tiny_onnx, registry, failing_passes):
    args = [
        "compile",
        tiny_onnx,
        "--pipeline",
        "onnx(cleanup,boom,check)",
        "-o",
        tmp_path / "out.onnx",
    ]
    plain = run_bevcc(*args, env_extra=failing_passes)
    error = (
        "bevcc: error: pass 'boom' failed after [cleanup]: boom on 17 nodes "
        "(0 QuantizeLinear), calibration data none\n"
    )
    assert (plain.returncode, plain.stderr) == (1, error)
    proc = run_bevcc(*args, "--print-ir-after-failure", env_extra=failing_passes)
    header = (
        "// ----- IR after onnx(boom) failed (the pass returned none; this is the IR it was "
        "given, with any changes it made in place) ----- //\n"
    )
    dump = _onnx_dump_after(tiny_onnx, registry, "onnx(cleanup)")
    assert (proc.returncode, proc.stderr) == (1, header + dump + error)
    assert not (tmp_path / "out.onnx").exists()


def test_print_ir_after_failure_when_a_check_rejected_the_returned_ir(
    tmp_path, tiny_onnx, registry, failing_passes
):
    proc = run_bevcc(
        "compile",
        tiny_onnx,
        "--pipeline",
        "onnx(breaker)",
        "-o",
        tmp_path / "out.onnx",
        "--print-ir-after-failure",
        env_extra=failing_passes,
    )

    def _break(ir):
        ir.graph.nodes[0].op = "NoSuchOp"

    dump = _onnx_dump_after(tiny_onnx, registry, "onnx(check)", _break)
    assert "= NoSuchOp(" in dump
    assert (proc.returncode, proc.stderr) == (
        1,
        "// ----- IR after onnx(breaker) failed (as the pass returned it) ----- //\n"
        + dump
        + "bevcc: error: pass 'breaker' broke the IR (after []): onnx graph is invalid: No Op "
        "registered for NoSuchOp with domain_version of 17\n",
    )


def _readme_command(directory: Path) -> tuple[list[str], str]:
    """The reproducer's command (its last line) as argv without `bevcc`, and where to run it."""
    lines = (directory / "README.txt").read_text().splitlines()
    where = next(line for line in lines if line.startswith("Run in "))
    cwd = shlex.split(where[len("Run in ") :].split(" (paths are")[0])[0]
    words = shlex.split(lines[-1])
    assert words[:2] == ["bevcc", "compile"]
    return words[1:], cwd


def test_reproducer_round_trip_fx(tmp_path, registry, failing_passes):
    pipeline = "fx(dce,qdq_insert),export,onnx(check)"
    proc = run_bevcc(
        "compile",
        "tiny_cnn",
        "--pipeline",
        pipeline,
        "-o",
        "out.onnx",
        "--reproducer",
        "rep",
        cwd=tmp_path,
        env_extra=failing_passes,
    )
    cause = (
        "qdq_insert needs calibration data for its activation quantizers: give --calib DATA "
        "(bevcc.compile(..., calib=...))"
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "wrote reproducer rep (the command that reruns fx(qdq_insert) is in rep/README.txt)",
        f"bevcc: error: pass 'qdq_insert' failed after [dce]: {cause}",
    ]
    rep = tmp_path / "rep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failing_passes.py", "rep", "scratch"]
    assert sorted(p.name for p in rep.iterdir()) == ["README.txt", "input.pt", "pipeline.txt"]
    assert list((tmp_path / "scratch").glob("bevcc-reproducer-*")) == []
    assert (rep / "pipeline.txt").read_text() == "fx(qdq_insert),export,onnx(check)\n"
    assert (rep / "README.txt").read_text() == (
        f"bevcc reproducer: pass 'qdq_insert' failed after [dce]: {cause}\n\n"
        "input.pt: the IR before fx(qdq_insert), as bevcc saved it\n"
        "pipeline.txt: the pipeline from fx(qdq_insert) on\n\n"
        f"Run in {shlex.quote(str(tmp_path))} (paths are as they were given there):\n"
        "bevcc compile rep/input.pt --pipeline 'fx(qdq_insert),export,onnx(check)' "
        "-o rep/output\n"
    )
    # input.pt is the graph after dce, exactly
    before = bevcc.compile("tiny_cnn", pipeline="fx(dce)", registry=registry).ir
    assert FxIR.load(rep / "input.pt", registry.trace_rules()).dump() == before.dump()

    argv, cwd = _readme_command(rep)
    again = run_bevcc(*argv, cwd=cwd)
    assert (again.returncode, again.stderr) == (
        2,
        f"bevcc: error: pass 'qdq_insert' failed after []: {cause}\n",
    )
    assert not (rep / "output").exists()
    # with the data it lacked, input.pt compiles to the very file the whole pipeline gives
    calib = "bevcc.reference.tiny_cnn:calibration_batches"
    bevcc.compile(
        rep / "input.pt",
        pipeline=(rep / "pipeline.txt").read_text(),
        calib=calib,
        output=tmp_path / "fixed.onnx",
        registry=registry,
    )
    bevcc.compile(
        "tiny_cnn",
        pipeline=pipeline,
        calib=calib,
        output=tmp_path / "whole.onnx",
        registry=registry,
    )
    assert (tmp_path / "fixed.onnx").read_bytes() == (tmp_path / "whole.onnx").read_bytes()


def test_reproducer_round_trip_onnx_with_calibration_data(tmp_path, tiny_onnx, failing_passes):
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    proc = run_bevcc(
        "compile",
        tiny_onnx,
        "--pipeline",
        "onnx(cleanup,qdq_insert,boom,check)",
        "--calib",
        "data.npz",
        "-o",
        "out.onnx",
        "--reproducer",
        "rep",
        cwd=tmp_path,
        env_extra=failing_passes,
    )
    cause = "boom on 47 nodes (15 QuantizeLinear), calibration data data.npz"
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-2:] == [
        "wrote reproducer rep (the command that reruns onnx(boom) is in rep/README.txt)",
        f"bevcc: error: pass 'boom' failed after [cleanup, qdq_insert]: {cause}",
    ]
    rep = tmp_path / "rep"
    assert not (tmp_path / "out.onnx").exists()
    assert sorted(p.name for p in rep.iterdir()) == ["README.txt", "input.onnx", "pipeline.txt"]
    assert list((tmp_path / "scratch").glob("bevcc-reproducer-*")) == []
    assert (rep / "pipeline.txt").read_text() == "onnx(boom,check)\n"
    saved = OnnxIR.load(rep / "input.onnx")
    assert sum(n.op == "QuantizeLinear" for n in saved.graph.nodes) == 15  # after qdq_insert
    assert (rep / "README.txt").read_text().splitlines()[-1] == (
        "bevcc compile rep/input.onnx --pipeline 'onnx(boom,check)' --calib data.npz -o rep/output"
    )

    argv, cwd = _readme_command(rep)
    again = run_bevcc(*argv, cwd=cwd, env_extra=failing_passes)
    assert (again.returncode, again.stderr) == (
        1,
        f"bevcc: error: pass 'boom' failed after []: {cause}\n",
    )
    assert sorted(p.name for p in rep.iterdir()) == ["README.txt", "input.onnx", "pipeline.txt"]


def test_reproducer_directory_is_checked_first_and_untouched_on_success(
    tmp_path, tiny_onnx, failing_passes
):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    args = ["compile", tiny_onnx, "--pipeline", "onnx(boom)", "-o", tmp_path / "out.onnx"]
    proc = run_bevcc(*args, "--reproducer", tmp_path / "mine", env_extra=failing_passes)
    assert (proc.returncode, proc.stderr) == (
        2,
        (
            f"bevcc: error: --reproducer {tmp_path / 'mine'}: the directory holds other files "
            "and would be replaced whole; name a new or empty directory\n"
        ),
    )
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]

    ok = run_bevcc(
        "compile",
        tiny_onnx,
        "--pipeline",
        "onnx(cleanup,check)",
        "-o",
        tmp_path / "out.onnx",
        "--reproducer",
        tmp_path / "rep",
        env_extra=failing_passes,
    )
    assert (ok.returncode, ok.stderr) == (0, f"wrote {tmp_path / 'out.onnx'}\n")
    assert not (tmp_path / "rep").exists()
    assert list((tmp_path / "scratch").glob("bevcc-reproducer-*")) == []


SET = """output = "out"
[[files]]
name = "a"
input = "tiny.onnx"
pipeline = "onnx(cleanup,check)"
precision = "fp32"
[[files]]
name = "b"
input = "tiny.onnx"
pipeline = "onnx(cleanup,boom,check)"
precision = "fp32"
"""


def test_a_set_writes_the_failing_files_ir_and_reproducer(
    tmp_path, tiny_onnx, registry, failing_passes
):
    (tmp_path / "set.toml").write_text(SET)
    (tmp_path / "rep" / "old").mkdir(parents=True)  # an earlier set's reproducer: replaced whole
    (tmp_path / "rep" / "old" / "README.txt").write_text("bevcc reproducer: an old failure\n")
    args = ["compile", "--config", "set.toml", "--reproducer", "rep", "--print-ir-after-failure"]
    proc = run_bevcc(*args, cwd=tmp_path, env_extra=failing_passes)
    boom = "boom on 17 nodes (0 QuantizeLinear), calibration data none"
    cause, cause_alone = (f"pass 'boom' failed after [{a}]: {boom}" for a in ("cleanup", ""))
    assert proc.returncode == 1
    assert re.sub(r"\(\d+\.\d s\)", "(T s)", proc.stderr) == (
        "[1/2] a: onnx(cleanup,check)\n"
        "wrote out/a.onnx (T s)\n"
        "[2/2] b: onnx(cleanup,boom,check)\n"
        "// ----- IR after onnx(boom) failed (the pass returned none; this is the IR it was "
        "given, with any changes it made in place) ----- //\n"
        + _onnx_dump_after(tiny_onnx, registry, "onnx(cleanup)")
        + "wrote reproducer rep/b (the command that reruns onnx(boom) is in rep/b/README.txt)\n"
        f"bevcc: error: file 'b' (2/2): {cause}\n"
    )
    assert not (tmp_path / "out").exists()
    rep = tmp_path / "rep"
    assert sorted(str(p.relative_to(rep)) for p in rep.rglob("*")) == [
        "b",
        "b/README.txt",
        "b/input.onnx",
        "b/pipeline.txt",
    ]
    assert (rep / "b" / "pipeline.txt").read_text() == "onnx(boom,check)\n"
    assert list((tmp_path / "scratch").glob("bevcc-reproducer-*")) == []
    argv, cwd = _readme_command(rep / "b")
    assert argv == [
        "compile",
        "rep/b/input.onnx",
        "--pipeline",
        "onnx(boom,check)",
        "-o",
        "rep/b/output",
    ]
    again = run_bevcc(*argv, cwd=cwd, env_extra=failing_passes)
    assert (again.returncode, again.stderr) == (1, f"bevcc: error: {cause_alone}\n")


@pytest.mark.parametrize(
    ("reproducer", "error"),
    [
        (
            "notes",
            (
                "--reproducer notes: the directory holds other files and would be replaced "
                "whole; name a new or empty directory"
            ),
        ),
        (
            "out/rep",
            "--reproducer out/rep lies inside the output directory out; name a directory outside it",
        ),
    ],
)
def test_a_sets_reproducer_directory_is_checked_before_any_file_compiles(
    tmp_path, tiny_onnx, failing_passes, reproducer, error
):
    (tmp_path / "set.toml").write_text(SET)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("keep me")
    args = ["compile", "--config", "set.toml", "--reproducer", reproducer]
    proc = run_bevcc(*args, cwd=tmp_path, env_extra=failing_passes)
    assert (proc.returncode, proc.stderr) == (2, f"bevcc: error: {error}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "failing_passes.py",
        "notes",
        "scratch",
        "set.toml",
        "tiny.onnx",
    ]


def test_the_fp16_sets_failing_file_gets_its_reproducer_under_fp16(
    tmp_path, tiny_onnx, failing_passes
):
    np.savez(tmp_path / "calib.npz", x=np.ones((2, 3, 32, 32), np.float32))
    (tmp_path / "set.toml").write_text(
        'output = "out"\nfp16_set = true\n[[files]]\nname = "m"\ninput = "tiny.onnx"\n'
        'calib = "calib.npz"\npipeline = "onnx(qdq_insert,float_only,strong_typing,check)"\n'
        'precision = "int8"\n'
    )
    args = ["compile", "--config", "set.toml", "--reproducer", "rep"]
    proc = run_bevcc(*args, cwd=tmp_path, env_extra=failing_passes)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-2:] == [
        (
            "wrote reproducer rep/fp16/m (the command that reruns onnx(float_only) is in "
            "rep/fp16/m/README.txt)"
        ),
        "bevcc: error: file 'm' (1/1): pass 'float_only' failed after []: no QuantizeLinear here",
    ]
    rep = tmp_path / "rep"
    assert sorted(str(p.relative_to(rep)) for p in rep.rglob("*")) == [
        "fp16",
        "fp16/m",
        "fp16/m/README.txt",
        "fp16/m/input.onnx",
        "fp16/m/pipeline.txt",
    ]
    assert (rep / "fp16" / "m" / "README.txt").read_text().splitlines()[-1] == (
        "bevcc compile rep/fp16/m/input.onnx --pipeline 'onnx(float_only,strong_typing,check)' --calib "
        "calib.npz -o rep/fp16/m/output"
    )
    assert not (tmp_path / "out").exists()


def test_in_process_calibration_data_is_named_in_the_readme(tmp_path, registry, tiny):
    registry.add_pass(fx_pass("boom", _raise))
    batches = [{"x": np.zeros((1, 3, 32, 32), np.float32)}]
    stream = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a reproducer that could not be written warns
        with pytest.raises(PassError):
            bevcc.compile(
                tiny,
                pipeline="fx(boom)",
                calib=batches,
                registry=registry,
                reproducer=tmp_path / "rep",
                stream=stream,
            )
    assert stream.getvalue() == (
        f"wrote reproducer {tmp_path / 'rep'} (the command that reruns "
        f"fx(boom) is in {tmp_path / 'rep' / 'README.txt'})\n"
    )
    readme = (tmp_path / "rep" / "README.txt").read_text().splitlines()
    assert readme[5:7] == [
        (
            "The calibration data was given in-process, not as a path: add "
            "--calib with the same data to the command."
        ),
        "",
    ]
    assert (
        readme[-1] == f"bevcc compile {tmp_path / 'rep' / 'input.pt'} --pipeline 'fx(boom)' "
        f"-o {tmp_path / 'rep' / 'output'}"
    )


def test_the_reproducer_command_carries_the_data_flags_and_no_verify(tmp_path):
    reproducer = Reproducer(
        tmp_path / "my rep",
        parse_pipeline("onnx(cleanup,check)"),
        calib="calib dir",
        calib_batch_size=4,
        verify_each=False,
    )
    assert reproducer.command("input.onnx", "onnx(check)") == (
        f"bevcc compile '{tmp_path}/my rep/input.onnx' --pipeline 'onnx(check)' --calib "
        f"'calib dir' --calib-batch-size 4 --no-verify -o '{tmp_path}/my rep/output'"
    )


def test_the_interface_is_public_on_the_package():
    import bevcc
    from bevcc.pm.instrument import Instrumentation

    assert bevcc.Instrumentation is Instrumentation and "Instrumentation" in bevcc.__all__
