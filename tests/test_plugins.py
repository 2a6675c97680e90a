"""Plugins found through real installed distributions (pip --target), and in-process registration."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bevcc
from bevcc import plugins
from tests.conftest import run_bevcc

ROOT = Path(__file__).resolve().parents[1]


def _pip_install(target: Path, source: Path) -> None:
    # no time limit: a local folder without dependencies or build isolation, so pip reaches no
    # index and starts no build environment; nothing there can hang
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )


def _write_misspelt_plugin(root: Path) -> Path:
    """A plugin whose hook name lacks the final s: pluggy alone would load it and call nothing."""
    (root / "bevcc_misspelt").mkdir(parents=True)
    (root / "bevcc_misspelt" / "__init__.py").write_text(
        "import bevcc\n"
        "from bevcc.passes.check.onnx import Check\n"
        "class Mine(Check):\n    name = 'mine'\n"
        "@bevcc.hookimpl\n"
        "def bevcc_register_pass(registry):\n"
        "    registry.add_pass(Mine)\n"
    )
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "bevcc-misspelt"\nversion = "0.0.2"\n'
        '[project.entry-points.bevcc]\nmisspelt = "bevcc_misspelt"\n'
        '[tool.setuptools]\npackages = ["bevcc_misspelt"]\n'
    )
    return root


def _write_broken_plugin(root: Path) -> Path:
    (root / "bevcc_broken").mkdir(parents=True)
    (root / "bevcc_broken" / "__init__.py").write_text("import a_module_that_does_not_exist\n")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "bevcc-broken"\nversion = "0.0.1"\n'
        '[project.entry-points.bevcc]\nbroken = "bevcc_broken"\n'
        '[tool.setuptools]\npackages = ["bevcc_broken"]\n'
    )
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A directory with the example plugin and a broken plugin really installed by pip."""
    target = tmp_path_factory.mktemp("site")
    _pip_install(target, ROOT / "plugins" / "bevcc-example")
    _pip_install(target, _write_broken_plugin(tmp_path_factory.mktemp("broken_src")))
    _pip_install(target, _write_misspelt_plugin(tmp_path_factory.mktemp("misspelt_src")))
    return target


def _env(site, **extra):
    # The target dir goes first so its copies of the plugins are the ones discovered.
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **extra}


def test_installed_plugin_pass_is_listed_and_usable(site, tmp_path, tiny_onnx):
    proc = run_bevcc("passes", "--json", env_extra=_env(site))
    rows = {r["name"]: r for r in json.loads(proc.stdout)["passes"]}
    assert rows["remove_identity"]["plugin"] == "example"
    assert rows["remove_identity"]["ir"] == "onnx"
    assert rows["check"]["plugin"] == "bevcc"
    out = tmp_path / "out.onnx"
    proc = run_bevcc(
        "compile",
        tiny_onnx,
        "--pipeline",
        "onnx(remove_identity,check)",
        "-o",
        out,
        env_extra=_env(site),
    )
    assert proc.returncode == 0 and out.is_file()


def test_plugins_lists_versions_contributions_and_the_broken_one(site):
    proc = run_bevcc("plugins", "--json", env_extra=_env(site))
    infos = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    assert infos["example"]["dist"] == "bevcc-example"
    assert infos["example"]["version"] == "0.1.0"
    assert infos["example"]["contributions"] == {"passes": ["onnx:remove_identity"]}
    assert infos["broken"]["status"] == "failed"
    assert infos["broken"]["error"] == (
        "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'"
    )
    warning = [line for line in proc.stderr.splitlines() if "broken" in line]
    assert warning == [
        (
            "bevcc: warning: plugin 'broken' (from bevcc-broken 0.0.1) failed to load: "
            "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'; "
            "skipped. Fix or uninstall it, or set BEVCC_DISABLE_PLUGIN_AUTOLOAD=1"
        )
    ]
    assert "Traceback" not in proc.stderr


def test_a_misspelt_hook_is_named_and_the_plugin_listed_as_failed(site):
    proc = run_bevcc("plugins", "--json", env_extra=_env(site))
    info = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}["misspelt"]
    assert (info["status"], info["contributions"]) == ("failed", {})
    assert info["error"] == (
        "UnknownHookError: bevcc_register_pass is not a bevcc hook (did you "
        "mean bevcc_register_passes?)"
    )
    warning = [line for line in proc.stderr.splitlines() if "misspelt" in line]
    assert len(warning) == 1 and "bevcc_register_pass is not a bevcc hook" in warning[0]
    table = run_bevcc("plugins", env_extra=_env(site)).stdout
    assert any(
        line.startswith("misspelt 0.0.2") and "FAILED: UnknownHookError" in line
        for line in table.splitlines()
    )


def test_an_unmarked_hook_function_is_named(monkeypatch, tmp_path):
    (tmp_path / "unmarked_plugin.py").write_text("def bevcc_register_passes(registry):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BEVCC_PLUGINS", "unmarked_plugin")
    with pytest.warns(
        plugins.PluginLoadWarning, match="bevcc_register_passes is not marked @bevcc.hookimpl"
    ):
        loaded = plugins.load_plugins(autoload=False)
    assert [i.status for i in loaded.infos] == ["ok", "failed"]


def test_autoload_can_be_disabled_and_plugins_named_explicitly(site):
    env = _env(site, BEVCC_DISABLE_PLUGIN_AUTOLOAD="1")
    names = [
        p["name"]
        for p in json.loads(run_bevcc("plugins", "--json", env_extra=env).stdout)["plugins"]
    ]
    assert names == ["bevcc"]
    env["BEVCC_PLUGINS"] = "bevcc_example.plugin"
    names = [
        p["name"]
        for p in json.loads(run_bevcc("plugins", "--json", env_extra=env).stdout)["plugins"]
    ]
    assert names == ["bevcc", "bevcc_example.plugin"]


def test_a_plugin_whose_hook_fails_is_dropped_by_name(monkeypatch, tmp_path):
    (tmp_path / "half_plugin.py").write_text(
        "import bevcc\n"
        "from bevcc.passes.check.onnx import Check\n"
        "class Mine(Check):\n    name = 'mine'\n"
        "@bevcc.hookimpl\n"
        "def bevcc_register_passes(registry):\n"
        "    registry.add_pass(Mine)\n"
        "    raise RuntimeError('half way')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BEVCC_PLUGINS", "half_plugin")
    with pytest.warns(
        plugins.PluginLoadWarning,
        match="plugin 'half_plugin' failed to load: RuntimeError: half way",
    ):
        loaded = plugins.load_plugins(autoload=False)
    assert ("onnx", "mine") not in loaded.registry.passes  # nothing half-registered stays
    assert [i.status for i in loaded.infos] == ["ok", "failed"]


def test_register_pass_in_process_then_use_it_in_a_pipeline(monkeypatch, tiny):
    monkeypatch.setattr(plugins, "_DEFAULT", plugins.load_plugins(autoload=False))

    @bevcc.register_pass
    class CountNodes(bevcc.Pass):
        name = "count_nodes"
        summary = "Count FX nodes without changing anything."
        ir = "fx"

        def call(self, ir):
            return bevcc.PassResult(ir, modified=False, stats={"nodes": len(ir.graph.nodes)})

    result = bevcc.compile(tiny, pipeline="fx(count_nodes,dce)")
    assert result.records[0].stats == {"nodes": 24}
    assert result.records[0].name == "fx(count_nodes)"
    assert plugins.get_registry().passes[("fx", "count_nodes")].plugin == "<local>"
