"""Registry lookups (closest names), registration rules, pass declarations (lazy passes), and typed
option conversion."""

from dataclasses import dataclass
from typing import Literal

import pytest

from bevcc import NoOptions, Pass, PassResult
from bevcc.errors import PluginError, UsageError
from bevcc.pass_info import PassInfo
from bevcc.plugins import load_plugins
from bevcc.pm.options import build_options
from bevcc.registry import Registry


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_misspelt_pass_suggests_the_closest_name(registry):
    with pytest.raises(UsageError) as info:
        registry.lookup("chek", "onnx", conversion=False)
    assert _one_line(info) == "unknown onnx pass 'chek': did you mean check? (see `bevcc passes`)"


def test_far_off_name_lists_what_is_known(registry):
    with pytest.raises(UsageError) as info:
        registry.lookup("zzzz", "fx", conversion=False)
    assert (
        _one_line(info)
        == "unknown fx pass 'zzzz': known: bn_fold, dce, qdq_insert, quantizer_unify, sensitivity_disable, sparse_conv_quant (see `bevcc passes`)"
    )


def test_pass_on_the_wrong_ir_says_where_it_belongs(registry):
    with pytest.raises(
        UsageError, match=r"pass 'dce' runs on fx, not onnx: move it into fx\(...\)"
    ):
        registry.lookup("dce", "onnx", conversion=False)
    with pytest.raises(UsageError, match="'export' converts fx to onnx: write it at the top level"):
        registry.lookup("export", "fx", conversion=False)
    with pytest.raises(
        UsageError, match="conversion 'export' reads fx, but the pipeline holds onnx"
    ):
        registry.lookup("export", "onnx", conversion=True)
    with pytest.raises(UsageError, match=r"'check' is a pass on onnx: write it inside onnx\(...\)"):
        registry.lookup("check", "onnx", conversion=True)


@dataclass(frozen=True)
class _Opts:
    count: int = 1
    ratio: float = 0.5
    flag: bool = False
    mode: Literal["max", "histogram"] = "max"
    label: str = ""
    limit: int | None = None


class _Typed(Pass):
    name = "typed"
    summary = "test pass"
    ir = "fx"
    Options = _Opts

    def call(self, ir):
        return PassResult(ir, False)


def test_options_are_converted_to_their_declared_types():
    opts = build_options(
        _Typed,
        [
            ("count", "3"),
            ("ratio", "0.25"),
            ("flag", "true"),
            ("mode", "histogram"),
            ("label", "a:b"),
            ("limit", "none"),
        ],
    )
    assert opts == _Opts(count=3, ratio=0.25, flag=True, mode="histogram", label="a:b", limit=None)
    assert build_options(_Typed, [("limit", "7")]).limit == 7


@pytest.mark.parametrize(
    "given, message",
    [
        (
            [("count", "three")],
            "pass 'typed' option 'count=three': expected an integer (e.g. 3 or 0x10)",
        ),
        ([("count", "")], "pass 'typed' option 'count=': expected an integer (e.g. 3 or 0x10)"),
        (
            [("ratio", "1/4")],
            "pass 'typed' option 'ratio=1/4': expected a number (e.g. 0.25 or 1e-3)",
        ),
        ([("flag", "maybe")], "pass 'typed' option 'flag=maybe': expected true or false"),
        ([("mode", "mse")], "pass 'typed' option 'mode=mse': expected one of max, histogram"),
        (
            [("colour", "red")],
            (
                "pass 'typed' has no option 'colour' (its options: count, ratio, flag, "
                "mode, label, limit)"
            ),
        ),
        ([("count", "1"), ("count", "2")], "pass 'typed': option 'count' is given twice"),
    ],
)
def test_bad_option_values_are_one_line_errors(given, message):
    with pytest.raises(UsageError) as info:
        build_options(_Typed, given)
    assert _one_line(info).startswith(message)


def test_option_validation_in_post_init_becomes_a_usage_error(registry):
    export = registry.lookup("export", "fx", conversion=True)
    with pytest.raises(UsageError, match="opset 11 is below 13"):
        build_options(export, [("opset", "11")])


def test_registration_rejects_malformed_passes_and_duplicates():
    reg = Registry(current_plugin="first")
    reg.add_pass(_Typed)
    reg.add_pass(_Typed)  # the same class twice is harmless (a re-imported module)

    class Other(_Typed):
        pass

    reg.current_plugin = "second"
    with pytest.raises(
        PluginError, match="'typed' on fx is registered twice: by 'first' and by 'second'"
    ):
        reg.add_pass(Other)

    class NoName(Pass):
        summary, ir = "x", "fx"

    with pytest.raises(PluginError, match="must set `name`"):
        reg.add_pass(NoName)

    class BadIR(_Typed):
        name, ir = "bad_ir", "tflite"

    with pytest.raises(PluginError, match="unknown IR"):
        reg.add_pass(BadIR)
    with pytest.raises(PluginError, match=r"register 'typed' with registry.add_pass"):
        reg.add_backend(_Typed)
    with pytest.raises(PluginError, match=r"not a bevcc.Pass subclass"):
        reg.add_pass(object)


# ---- declarations: what `bevcc passes` reads instead of importing the pass -----------------------
def test_every_builtin_declaration_matches_its_class(registry):
    from bevcc.pm.options import describe_options

    entries = registry.entries()
    assert len(entries) == 17  # simplify and topk_shrink are the 16th and 17th
    for entry in entries:
        info, cls = entry.info, entry.obj  # .obj imports the module
        declared = (
            info.name,
            info.ir,
            info.summary,
            info.output_kind(),
            info.quantizes,
            info.types,
        )
        assert declared == (
            cls.name, cls.ir, cls.summary, cls.output_kind(), cls.quantizes, cls.types
        )  # fmt: skip
        assert describe_options(info) == describe_options(cls), info.impl
        # the options a pipeline check builds are the ones the pass gets: from a module that
        # imports nothing heavy
        assert info.options.__module__.endswith(".options") or info.options is NoOptions


def test_every_builtin_class_states_its_metadata_only_in_its_declaration(registry):
    """One copy: a built-in pass class assigns none of the declared attributes itself (nor does
    a base it shares); `declaration=` gives it its folder's PassInfo."""
    import ast
    import inspect

    declared = {"name", "ir", "summary", "produces", "quantizes", "types", "Options"}
    for entry in registry.entries():
        cls = entry.obj
        for klass in [k for k in cls.__mro__ if k.__module__.startswith("bevcc.passes")]:
            tree = ast.parse(inspect.getsource(klass))
            assigned = {
                target.id
                for node in tree.body[0].body
                if isinstance(node, (ast.Assign, ast.AnnAssign))
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(target, ast.Name)
            }
            assert assigned & declared == set(), (klass.__qualname__, assigned & declared)
        assert (cls.summary, cls.Options) == (entry.info.summary, entry.info.options)


def test_a_class_bound_to_another_pass_declaration_is_refused():
    from bevcc.passes.dce import FX

    with pytest.raises(PluginError) as info:

        class NotDce(Pass, declaration=FX):
            def call(self, ir):
                return PassResult(ir, modified=False)

    assert _one_line(info) == (
        "tests.test_registry_and_options:test_a_class_bound_to_another_pass_declaration_is_"
        "refused.<locals>.NotDce takes the declaration of bevcc.passes.dce.fx:DeadCodeElimination "
        "(pass 'dce' on fx); bind it to its own"
    )


def test_a_class_with_its_own_attributes_still_registers():
    """Third-party passes (README: `@bevcc.register_pass class CountNodes(bevcc.Pass)`) keep
    stating name, summary and IR as class attributes."""

    class CountNodes(Pass):
        name = "count_nodes"
        summary = "Count nodes."
        ir = "onnx"

        def call(self, ir):
            return PassResult(ir, modified=False, stats={"nodes": ir.node_count()})

    reg = Registry(current_plugin="mine")
    reg.add_pass(CountNodes)
    assert reg.lookup("count_nodes", "onnx", conversion=False) is CountNodes
    assert reg.pass_info("count_nodes", "onnx", conversion=False).summary == "Count nodes."


def test_a_declaration_the_class_contradicts_is_one_error_naming_both():
    reg = Registry(current_plugin="mine")
    reg.add_pass(
        PassInfo(
            name="check", ir="onnx", summary="Validate it.", impl="bevcc.passes.check.onnx:Check"
        )
    )
    assert reg.pass_info("check", "onnx", conversion=False).summary == "Validate it."
    with pytest.raises(PluginError) as info:
        reg.lookup("check", "onnx", conversion=False)
    assert _one_line(info) == (
        "plugin 'mine': pass 'check' on onnx: bevcc.passes.check.onnx:Check has summary "
        "'Validate the ONNX graph with onnx.checker and strict shape inference (even with "
        "--no-verify).', its declaration 'Validate it.'; make the declaration and the class agree"
    )


def test_a_declaration_whose_module_is_missing_fails_when_run_not_when_listed():
    reg = Registry(current_plugin="mine")
    reg.add_pass(PassInfo(name="gone", ir="onnx", summary="x", impl="no_such_module_xyz:Gone"))
    assert [e.name for e in reg.entries()] == ["gone"]
    with pytest.raises(PluginError) as info:
        reg.lookup("gone", "onnx", conversion=False)
    assert _one_line(info) == (
        "plugin 'mine': pass 'gone' on onnx: cannot import no_such_module_xyz:Gone "
        "(ModuleNotFoundError: No module named 'no_such_module_xyz'); reinstall the plugin that "
        "declares it"
    )


def test_declaring_then_registering_the_class_is_one_pass_and_another_class_is_refused():
    from bevcc.passes.check import PASSES
    from bevcc.passes.check.onnx import Check

    reg = Registry(current_plugin="first")
    reg.add_pass(PASSES[0])
    reg.add_pass(Check)  # the same pass, now imported
    assert reg.lookup("check", "onnx", conversion=False) is Check

    class OtherCheck(Check):
        pass

    reg.current_plugin = "second"
    with pytest.raises(
        PluginError,
        match="'check' on onnx is registered twice: by 'first' and by 'second'; rename one",
    ):
        reg.add_pass(OtherCheck)
    with pytest.raises(PluginError, match=r"register 'export' with registry.add_backend"):
        reg.add_pass(PassInfo(name="export", ir="fx", produces="onnx", summary="x", impl="m:C"))


def test_export_options_state_the_opset_floor_of_the_onnx_ir():
    from bevcc.ir.onnx import MIN_OPSET
    from bevcc.passes.export import options

    assert options.MIN_OPSET == MIN_OPSET == 13


def test_pipeline_check_gives_the_pass_managers_errors(registry):
    from bevcc.pipeline_check import check_pipeline
    from bevcc.pm.manager import PassManager
    from bevcc.pm.pipeline import parse_pipeline

    bad = {
        "fx(dce),export,onnx(clenup)": "unknown onnx pass 'clenup': did you mean cleanup?",
        "fx(bn_fold{sparse_bias=maybe})": "pass 'bn_fold' option 'sparse_bias=maybe': "
        "expected one of auto, inside, outside",
        "fx(dce),export{opset=11}": "pass 'export' options: opset 11 is below 13",
        "onnx(check)": "'onnx(check)' runs on onnx, but the pipeline holds fx there",
        "fx(export)": "'export' converts fx to onnx: write it at the top level",
    }
    for text, message in bad.items():
        with pytest.raises(UsageError) as checked:
            check_pipeline(parse_pipeline(text), registry, "fx")
        with pytest.raises(UsageError) as managed:
            PassManager(text, load_plugins(autoload=False).registry, "fx")
        assert str(checked.value) == str(managed.value)
        assert str(checked.value).startswith(message)
    # (that the check imports no pass module is tested in a fresh process: test_cli_latency)
    assert check_pipeline(parse_pipeline("fx(dce),export_libspconv"), registry, "fx") == "libspconv"
