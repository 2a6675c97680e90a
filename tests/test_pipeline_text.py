"""Pipeline text: parse and print back, syntax errors as one line naming the column."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bevcc.errors import UsageError
from bevcc.pm.pipeline import IRGroup, Pipeline, StepSpec, parse_pipeline

CANONICAL = [
    "fx(bn_fold,qdq_insert{calibrator=histogram:mse}),export,onnx(check)",
    "fx(bn_fold,qdq_insert{calib=histogram:mse},quantizer_unify),export,onnx(lint)",
    "onnx(check)",
    "export",
    'fx(a{path="with space",x=1}),export{opset=13}',
    "fx(sensitivity_disable{top_k=3}),export_libspconv",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_text_prints_back_identically(text):
    assert parse_pipeline(text).text() == text


def test_structure_of_a_parsed_pipeline():
    p = parse_pipeline("fx(bn_fold, qdq_insert{calibrator=histogram:mse}) , export, onnx(check)")
    assert p.elements == [
        IRGroup(
            "fx", [StepSpec("bn_fold"), StepSpec("qdq_insert", [("calibrator", "histogram:mse")])]
        ),
        StepSpec("export"),
        IRGroup("onnx", [StepSpec("check")]),
    ]
    assert p.text() == CANONICAL[0]
    assert p.step_names() == ["bn_fold", "qdq_insert", "export", "check"]


@pytest.mark.parametrize(
    "text, column, expected",
    [
        ("fx(dce", 7, "expected ')'"),
        ("fx(dce))", 8, "expected ',' or end of text"),
        ("fx(dce{opset})", 13, "expected '='"),
        ("fx(dce{a=)})", 10, "expected an option value"),
        ("fx(,dce)", 4, "expected a pass name"),
        ('fx(a{b="open', 13, "expected closing '\"'"),
        ("fx(a),,export", 7, "expected an IR group"),
    ],
)
def test_syntax_errors_name_the_column(text, column, expected):
    with pytest.raises(UsageError) as info:
        parse_pipeline(text)
    message = str(info.value)
    assert expected in message and f"column {column}" in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["fx(a{b=})", "fx(a{b= })", 'fx(a{b=""})'])
def test_an_option_written_without_a_value_is_the_empty_value(text):
    """`b=` reaches the option's own check (e.g. `key must not be empty`), as `b=""` does."""
    assert parse_pipeline(text).elements == [IRGroup("fx", [StepSpec("a", [("b", "")])])]
    assert parse_pipeline(text).text() == 'fx(a{b=""})'
    assert parse_pipeline("fx(a{b=,c=1})").elements[0].steps[0].options == [("b", ""), ("c", "1")]


def test_empty_pipeline_is_an_error():
    with pytest.raises(UsageError, match="pipeline text is empty"):
        parse_pipeline("  ")


_word = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
_value = st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1, max_size=8)
_step = st.builds(StepSpec, _word, st.lists(st.tuples(_word, _value), max_size=3))
_element = st.one_of(
    _step,
    st.builds(IRGroup, st.sampled_from(["fx", "onnx"]), st.lists(_step, min_size=1, max_size=3)),
)


@given(st.lists(_element, min_size=1, max_size=4))
def test_any_pipeline_survives_print_parse_print(elements):
    text = Pipeline(elements).text()
    reparsed = parse_pipeline(text)
    assert reparsed.elements == elements
    assert reparsed.text() == text
