"""The `bevcc` command as a user meets it: subprocesses of the installed console script."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bevcc.testing import NO_PLUGINS
from tests.conftest import run_bevcc


def _one_error_line(proc, code=2):
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bevcc: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_compile_echoes_the_pipeline_and_writes_a_valid_file(tmp_path, tiny_onnx):
    out = tmp_path / "out.onnx"
    proc = run_bevcc(
        "compile", tiny_onnx, "--pipeline", "onnx(check)", "-o", out, "--print-pipeline"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "onnx(check)\n"
    onnx.checker.check_model(onnx.load(out), full_check=True)


def test_misspelt_pass_is_one_line_and_writes_nothing(tmp_path, tiny_onnx):
    out = tmp_path / "out.onnx"
    # Only the built-in passes: an installed plugin's pass (swin's mha_check) is a close match too.
    proc = run_bevcc(
        "compile", tiny_onnx, "--pipeline", "onnx(chek)", "-o", out, env_extra=NO_PLUGINS
    )
    assert _one_error_line(proc) == (
        "bevcc: error: unknown onnx pass 'chek': did you mean check? (see `bevcc passes`)"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--pipeline", "onnx(cleanup{remove_unused_inputs=maybe})"],
            "pass 'cleanup' option 'remove_unused_inputs=maybe': expected true or false",
        ),
        (["--pipeline", "fx(dce)"], "'fx(dce)' runs on fx, but the pipeline holds onnx there"),
        (["--pipeline", "onnx(check"], "pipeline text: expected ')' at column 11"),
        (["--print-ir-after", "dce"], "--print-ir-after names dce, not in the pipeline"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, tiny_onnx, args, message):
    proc = run_bevcc("compile", tiny_onnx, "-o", tmp_path / "out.onnx", *args)
    assert message in _one_error_line(proc)
    assert not (tmp_path / "out.onnx").exists()


def test_bad_input_files_are_one_line(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xff" * 50)
    line = _one_error_line(run_bevcc("compile", garbage, "-o", tmp_path / "o.onnx"), code=1)
    assert "garbage.onnx" in line and "re-export" in line
    line = _one_error_line(
        run_bevcc("compile", "missing_module_xyz:build", "-o", tmp_path / "o.onnx"), code=1
    )
    assert "cannot import module 'missing_module_xyz'" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.onnx"]


def test_output_suffix_must_match_the_final_ir(tmp_path, tiny_onnx):
    line = _one_error_line(run_bevcc("compile", tiny_onnx, "-o", tmp_path / "out.pt"))
    assert "but the pipeline ends on onnx IR, which is written as .onnx" in line


def test_compile_a_python_model_to_onnx_matches_torch(tmp_path):
    model_file = tmp_path / "my_model.py"
    model_file.write_text(
        "from bevcc.reference.tiny_cnn import tiny_cnn\ndef build():\n    return tiny_cnn(seed=3)\n"
    )
    out = tmp_path / "build"
    proc = run_bevcc("compile", f"{model_file}:build", "-o", out, "--timing")
    assert proc.returncode == 0, proc.stderr
    assert "===- bevcc pass timing -===" in proc.stderr
    from bevcc.reference.tiny_cnn import tiny_cnn

    model, (x,) = tiny_cnn(seed=3)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(out / "model.onnx"), options)
    (got,) = session.run(None, {"x": x.numpy()})
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_compiling_twice_gives_byte_identical_files(tmp_path):
    for name in ("a.onnx", "b.onnx"):
        assert run_bevcc("compile", "tiny_cnn", "-o", tmp_path / name).returncode == 0
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_calibration_data_provides_example_inputs(tmp_path):
    model_file = tmp_path / "net.py"
    model_file.write_text(
        "from bevcc.reference.tiny_cnn import tiny_cnn\ndef build():\n    return tiny_cnn()[0]\n"
    )  # module only: inputs come from --calib
    np.savez(tmp_path / "batch0.npz", x=np.ones((2, 3, 16, 16), np.float32))
    out = tmp_path / "net.onnx"
    proc = run_bevcc(
        "compile", f"{model_file}:build", "--calib", tmp_path / "batch0.npz", "-o", out
    )
    assert proc.returncode == 0, proc.stderr
    dims = onnx.load(out).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 16, 16]
    proc = run_bevcc("compile", f"{model_file}:build", "-o", tmp_path / "no.onnx")
    assert "export needs example inputs" in _one_error_line(proc, code=1)


def test_nan_in_calibration_data_names_input_and_batch(tmp_path):
    from bevcc.data import CalibData
    from bevcc.errors import InputError

    bad = tmp_path / "calib"
    bad.mkdir()
    np.savez(bad / "0.npz", x=np.ones((1, 3, 8, 8), np.float32))
    np.savez(bad / "1.npz", x=np.full((1, 3, 8, 8), np.nan, np.float32))
    with pytest.raises(
        InputError,
        match=r"calibration batch 1 input 'x' of .*calib contains NaN; "
        r"clean or drop that batch",
    ):
        list(CalibData(str(bad)))


def test_config_file_supplies_the_arguments(tmp_path):
    (tmp_path / "job.toml").write_text(
        'input = "tiny_cnn"\npipeline = "fx(dce),export{opset=13},onnx(check)"\n'
        'output = "out/model.onnx"\n'
    )
    proc = run_bevcc("compile", "--config", tmp_path / "job.toml", "--print-pipeline")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "fx(dce),export{opset=13},onnx(check)\n"
    assert onnx.load(tmp_path / "out" / "model.onnx").opset_import[0].version == 13
    (tmp_path / "bad.toml").write_text('input = "tiny_cnn"\npipelin = "x"\n')
    line = _one_error_line(run_bevcc("compile", "--config", tmp_path / "bad.toml", "-o", "x.onnx"))
    assert "unknown key(s) pipelin; known: input, pipeline, calib, output" in line


def test_passes_json_lists_builtins_with_their_options():
    proc = run_bevcc("passes", "--json", env_extra=NO_PLUGINS)
    rows = {(r["ir"], r["name"]): r for r in json.loads(proc.stdout)["passes"]}
    assert set(rows) == {
        ("fx", "bn_fold"),
        ("fx", "dce"),
        ("fx", "export"),
        ("fx", "qdq_insert"),
        ("fx", "quantizer_unify"),
        ("fx", "sparse_conv_quant"),
        ("fx", "sensitivity_disable"),
        ("fx", "export_libspconv"),
        ("onnx", "bn_fold"),
        ("onnx", "check"),
        ("onnx", "cleanup"),
        ("onnx", "qdq_insert"),
        ("onnx", "quantizer_unify"),
        ("onnx", "sensitivity_disable"),
        ("onnx", "simplify"),
        ("onnx", "strong_typing"),
        ("onnx", "topk_shrink"),
    }
    assert rows[("fx", "export_libspconv")]["produces"] == "libspconv"
    assert rows[("fx", "export")]["produces"] == "onnx"
    assert rows[("fx", "export")]["options"][0] == {
        "name": "opset",
        "type": "int",
        "default": 17,
        "help": "ONNX opset to emit (>= 13)",
    }
    assert {r["plugin"] for r in rows.values()} == {"bevcc"}


def test_passes_text_says_which_ir_each_options_line_belongs_to():
    """qdq_insert exists on fx and on onnx with different options: each line names its pass as
    a pipeline writes it, one line per registered pass that has options (per --json)."""
    text = run_bevcc("passes", env_extra=NO_PLUGINS).stdout.splitlines()
    rows = json.loads(run_bevcc("passes", "--json", env_extra=NO_PLUGINS).stdout)["passes"]
    labels = [line.split(" options: ")[0].strip() for line in text if " options: " in line]
    expected = [
        f"{r['ir']}({r['name']})"
        if r["ir"] == r["produces"]
        else f"{r['name']} ({r['ir']}->{r['produces']})"
        for r in rows
        if r["options"]
    ]
    assert labels == expected and len(set(labels)) == len(labels)
    assert {"fx(qdq_insert)", "onnx(qdq_insert)", "export (fx->onnx)"} <= set(labels)
    assert "  onnx(cleanup) options: remove_unused_inputs: bool = False" in text


def test_every_argument_of_every_command_has_help():
    """`bevcc lint --json` and `bevcc sensitivity --mode` once printed a bare flag."""
    import argparse

    from bevcc.cli import build_parser

    commands = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    bare = [
        f"{name} {action.dest}"
        for name, command in commands.items()
        for action in command._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert len(commands) == 6 and bare == []


def _models_listed_by(help_text: str) -> list[str]:
    flat = " ".join(help_text.split())  # argparse wraps to the terminal's width
    listed = flat.split("registered models (INPUT by name): ", 1)[1].split(";", 1)[0]
    return listed.split(", ")


@pytest.mark.parametrize("command", ["compile", "sensitivity"])
def test_compile_help_names_the_registered_models_and_the_callable_forms(command):
    proc = run_bevcc(command, "--help", env_extra=NO_PLUGINS)
    assert proc.returncode == 0, proc.stderr
    assert _models_listed_by(proc.stdout) == ["tiny_cnn", "tiny_sparse"]
    flat = " ".join(proc.stdout.split())
    assert "package.module:name, e.g. --calib bevcc.reference.tiny_cnn:calibration_batches" in flat
    # with the installed plugins: every model a plugin declares, as `bevcc plugins` lists them
    with_plugins = run_bevcc(command, "--help").stdout
    listed = json.loads(run_bevcc("plugins", "--json").stdout)["plugins"]
    declared = {m for p in listed for m in p.get("contributions", {}).get("models", [])}
    assert _models_listed_by(with_plugins) == sorted(declared) and len(declared) > 2


def test_plugins_json_and_version():
    proc = run_bevcc("plugins", "--json", env_extra=NO_PLUGINS)
    (builtin,) = json.loads(proc.stdout)["plugins"]
    assert builtin["name"] == "bevcc" and builtin["status"] == "ok"
    contributions = builtin["contributions"]
    leaf_modules = contributions.pop("leaf_modules")
    assert contributions == {
        "backends": ["fx:export", "fx:export_libspconv"],
        "models": ["tiny_cnn", "tiny_sparse"],
        "metrics": ["cosine", "sqnr"],
        "pipelines": ["default-fx", "default-onnx", "sensitivity-fx", "sensitivity-onnx"],
        "passes": [
            "fx:bn_fold",
            "fx:dce",
            "fx:qdq_insert",
            "fx:quantizer_unify",
            "fx:sensitivity_disable",
            "fx:sparse_conv_quant",
            "onnx:bn_fold",
            "onnx:check",
            "onnx:cleanup",
            "onnx:qdq_insert",
            "onnx:quantizer_unify",
            "onnx:sensitivity_disable",
            "onnx:simplify",
            "onnx:strong_typing",
            "onnx:topk_shrink",
        ],
        # spconv support (spconv is in the dev extra the tests run with)
        "leaf_functions": ["spconv.pytorch.core.SparseConvTensor"],
        "trace_rules": ["spconv.pytorch.modules.SparseSequential"],
    }
    assert len(leaf_modules) == 22  # 14 for spconv, the quantizer and 7 quantized layers
    assert {
        "bevcc.quant.quantizer.TensorQuantizer",
        "bevcc.quant.modules.QuantConv2d",
        "bevcc.sparse.conv_bias.SparseConvBias",
        "spconv.pytorch.conv.SparseConvolution",
        "spconv.pytorch.ToDense",
    } <= set(leaf_modules)
    assert run_bevcc("--version").stdout.strip() == "bevcc 0.1.0"
