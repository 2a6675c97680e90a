"""The sensitivity chart a person reads: a title saying what is plotted and what was decided, the
target line the decision used, and an axis zoomed to the values (units 0.003 apart must look
apart, which an axis from 0 hides). Checked on the matplotlib figure and the PNG's metadata."""

import io

import pytest
from PIL import Image

from bevcc.sensitivity.report import bar_chart, sensitivity_figure, values_line

# the fuser of the BEVFusion reference, ranked by BEV mAP (report.json of the main job)
ROWS = [
    {"unit": "backbone.blocks.1.0.0", "alone_quantized": 0.6949, "decision": "int8"},
    {"unit": "backbone.blocks.0.5.0", "alone_quantized": 0.6966, "decision": "int8"},
    {"unit": "fuser.fuse.0", "alone_quantized": 0.6984, "decision": "float"},
    {"unit": "backbone.blocks.0.3.0", "alone_quantized": 0.7002, "decision": "int8"},
]
SUMMARY = {
    "metric": "bevfusion_map",
    "float": 0.7012,
    "all_int8": 0.6980,
    "final": 0.6990,
    "target": 0.7012 * (1 - 0.005),
    "goal": "max_drop=0.005",
}


def lines_by_label(axes) -> dict[str, float]:
    """Vertical lines: legend label -> x."""
    return {
        line.get_label(): line.get_xdata()[0]
        for line in axes.get_lines()
        if not line.get_label().startswith("_")
    }


def test_the_chart_has_a_title_a_target_line_and_a_zoomed_axis():
    figure = sensitivity_figure("bevfusion_map", SUMMARY, ROWS)
    (axes,) = figure.axes
    title = axes.get_title()
    assert "bevfusion_map with only that unit in INT8" in title
    assert "kept float: 1 (max_drop=0.005)" in title
    lines = lines_by_label(axes)
    assert lines == {
        "target >= 0.6977 (max_drop=0.005)": pytest.approx(0.697694),
        "float 0.7012": 0.7012,
        "all INT8 0.698": 0.6980,
        "final 0.699": 0.6990,
    }
    low, high = axes.get_xlim()
    values = [r["alone_quantized"] for r in ROWS] + list(lines.values())
    # every value inside, with a margin, and the axis no wider than the data needs
    assert low < min(values) and high > max(values)
    assert high - low == pytest.approx(1.2 * (max(values) - min(values)))
    # units most sensitive first, each plotted at its value
    points = [line for line in axes.get_lines() if line.get_label().startswith("_")]
    assert [(p.get_xdata()[0], p.get_ydata()[0]) for p in points] == [
        (r["alone_quantized"], r["unit"]) for r in ROWS
    ]
    assert [p.get_color() for p in points] == ["tab:blue", "tab:blue", "tab:red", "tab:blue"]
    assert axes.yaxis_inverted()


def test_the_png_carries_the_title():
    png = Image.open(io.BytesIO(bar_chart("bevfusion_map", ROWS, SUMMARY)))
    assert png.text["Title"].startswith("Sensitivity of 4 units: bevfusion_map")
    assert png.width >= 800  # legible without zooming


def test_sqnr_has_the_float_model_as_reference_and_an_exact_match_does_not_stretch_the_axis():
    rows = [
        {"unit": "a", "alone_quantized": 30.0, "decision": "float"},
        {"unit": "b", "alone_quantized": 200.0, "decision": "int8"},  # exact: MAX_SQNR_DB
    ]
    summary = {
        "float": None,
        "all_int8": 28.0,
        "final": 32.5,
        "target": 32.0,
        "goal": "min_sqnr_db=32",
    }
    (axes,) = sensitivity_figure("sqnr", summary, rows).axes
    assert "float" not in " ".join(lines_by_label(axes))  # no line for the reference itself
    low, high = axes.get_xlim()
    assert low < 28.0 and 32.5 < high < 40
    assert values_line({"metric": "sqnr", **summary}) == (
        "sqnr vs the float model: float (reference), all INT8 28, final 32.5; "
        "target >= 32 (min_sqnr_db=32)"
    )
