"""Named pipelines: registered like passes, read by `bevcc compile` (its default) and
`bevcc sensitivity` (its prefix and analysis step), listed by `bevcc passes`."""

import pytest

from bevcc.cli import _sensitivity_pipeline
from bevcc.errors import PluginError, UsageError
from bevcc.pipeline_check import check_pipeline
from bevcc.pm.pipeline import parse_pipeline
from bevcc.registry import Registry


def test_builtin_pipelines_are_the_defaults_and_each_checks_on_its_ir(registry):
    texts = {name: registry.pipeline(name) for name in registry.pipelines}
    assert texts == {
        "default-fx": "fx(dce),export,onnx(cleanup,check)",
        "default-onnx": "onnx(simplify,cleanup,check)",
        "sensitivity-fx": "fx(bn_fold,qdq_insert,quantizer_unify,sensitivity_disable)",
        "sensitivity-onnx": (
            "onnx(simplify,bn_fold,qdq_insert,quantizer_unify,sensitivity_disable)"
        ),
    }
    ends = {
        name: check_pipeline(parse_pipeline(text), registry, name.rsplit("-", 1)[1])
        for name, text in texts.items()
    }
    assert ends == {
        "default-fx": "onnx",
        "default-onnx": "onnx",
        "sensitivity-fx": "fx",
        "sensitivity-onnx": "onnx",
    }
    assert {e.plugin for e in registry.pipelines.values()} == {"bevcc"}


def test_an_unknown_pipeline_name_suggests_the_closest():
    from bevcc.plugins import load_plugins

    registry = load_plugins(autoload=False).registry
    with pytest.raises(
        UsageError,
        match=r"^no named pipeline 'default-fz': did you mean "
        r"default-fx, default-onnx\? \(see `bevcc passes`\)$",
    ):
        registry.pipeline("default-fz")


def test_pipeline_registration_rules():
    reg = Registry(current_plugin="first")
    assert reg.add_pipeline("mine", " onnx( check ) ", "checks") == "mine"
    assert reg.pipeline("mine") == "onnx(check)"  # kept in canonical form
    reg.add_pipeline("mine", "onnx(check)", "checks")  # the same again is harmless
    reg.current_plugin = "second"
    with pytest.raises(
        PluginError,
        match=r"^pipeline 'mine' is registered twice: by 'first' and "
        r"by 'second'; rename one$",
    ):
        reg.add_pipeline("mine", "onnx(cleanup)", "cleans")
    with pytest.raises(
        PluginError,
        match=r"^plugin 'second': pipeline name 'My Pipe' must be "
        r"lowercase letters, digits, '-' and '_'$",
    ):
        reg.add_pipeline("My Pipe", "onnx(check)", "x")
    with pytest.raises(
        PluginError,
        match=r"^plugin 'second': pipeline 'broken': pipeline text: "
        r"expected '\)' at column 11",
    ):
        reg.add_pipeline("broken", "onnx(check", "x")
    with pytest.raises(
        PluginError,
        match=r"^plugin 'second': pipeline 'bare' needs a one-line "
        r"summary$",
    ):
        reg.add_pipeline("bare", "onnx(check)", "")
    assert reg.contributions("first") == {"pipelines": ["mine"]}


def test_sensitivity_pipeline_takes_prefix_and_analysis_from_the_named_pipeline(registry):
    budget = [("metric", "sqnr"), ("top_k", "2")]
    assert _sensitivity_pipeline(registry, "fx", None, budget) == (
        "fx(bn_fold,qdq_insert,quantizer_unify,sensitivity_disable{metric=sqnr,top_k=2})"
    )
    assert _sensitivity_pipeline(registry, "onnx", "", budget) == (
        "onnx(sensitivity_disable{metric=sqnr,top_k=2})"
    )  # --prefix '': already Q/DQ
    assert _sensitivity_pipeline(registry, "fx", "qdq_insert{calibrator=max}, ", budget) == (
        "fx(qdq_insert{calibrator=max},sensitivity_disable{metric=sqnr,top_k=2})"
    )
    assert _sensitivity_pipeline(registry, "fx", None, [("metric", "my metric")]).endswith(
        'sensitivity_disable{metric="my metric"})'
    )


def test_a_sensitivity_pipeline_of_another_shape_is_named():
    reg = Registry(current_plugin="odd")
    reg.add_pipeline("sensitivity-fx", "fx(dce),export,onnx(check)", "not one group")
    with pytest.raises(
        PluginError,
        match=r"^named pipeline 'sensitivity-fx' is "
        r"fx\(dce\),export,onnx\(check\); `bevcc sensitivity` "
        r"needs one fx\(...\) group ending in the analysis step$",
    ):
        _sensitivity_pipeline(reg, "fx", None, [])
