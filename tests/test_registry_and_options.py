"""Registry lookups (closest names), registration rules, and typed option conversion."""

from dataclasses import dataclass
from typing import Literal

import pytest

from bevcc import Pass, PassResult
from bevcc.errors import PluginError, UsageError
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
    assert _one_line(info) == "unknown fx pass 'zzzz': known: bn_fold, dce, qdq_insert, quantizer_unify, sensitivity_disable, sparse_conv_quant (see `bevcc passes`)"


def test_pass_on_the_wrong_ir_says_where_it_belongs(registry):
    with pytest.raises(UsageError, match=r"pass 'dce' runs on fx, not onnx: move it into fx\(...\)"):
        registry.lookup("dce", "onnx", conversion=False)
    with pytest.raises(UsageError, match="'export' converts fx to onnx: write it at the top level"):
        registry.lookup("export", "fx", conversion=False)
    with pytest.raises(UsageError, match="conversion 'export' reads fx, but the pipeline holds onnx"):
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
    opts = build_options(_Typed, [("count", "3"), ("ratio", "0.25"), ("flag", "true"),
                                  ("mode", "histogram"), ("label", "a:b"), ("limit", "none")])
    assert opts == _Opts(count=3, ratio=0.25, flag=True, mode="histogram", label="a:b", limit=None)
    assert build_options(_Typed, [("limit", "7")]).limit == 7


@pytest.mark.parametrize("given, message", [
    ([("count", "three")], "pass 'typed' option 'count=three': invalid literal for int()"),
    ([("flag", "maybe")], "pass 'typed' option 'flag=maybe': expected true or false"),
    ([("mode", "mse")], "pass 'typed' option 'mode=mse': expected one of max, histogram"),
    ([("colour", "red")], ("pass 'typed' has no option 'colour' (its options: count, ratio, flag, "
                          "mode, label, limit)")),
    ([("count", "1"), ("count", "2")], "pass 'typed': option 'count' is given twice"),
])
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
    with pytest.raises(PluginError, match="'typed' on fx is registered twice: by 'first' and by "
                                          "'second'"):
        reg.add_pass(Other)

    class NoName(Pass):
        summary, ir = "x", "fx"

    with pytest.raises(PluginError, match="must set `name`"):
        reg.add_pass(NoName)

    class BadIR(_Typed):
        name, ir = "bad_ir", "tflite"

    with pytest.raises(PluginError, match="unknown IR"):
        reg.add_pass(BadIR)
    with pytest.raises(PluginError, match="register 'typed' with registry.add_pass"):
        reg.add_backend(_Typed)
    with pytest.raises(PluginError, match="not a bevcc.Pass subclass"):
        reg.add_pass(object)
