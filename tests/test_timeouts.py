"""Test time limits grow with the machine (bevcc.testing.scaled_timeout): a busy or slow machine
gets proportionally longer limits instead of failing, and BEVCC_TEST_TIMEOUT_SCALE sets the
factor by hand. No test holds a fixed limit of its own (the main job's fixture watches CPU use
instead: tests/test_watchdog.py)."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from bevcc.testing import run_bevcc, scaled_timeout, timeouts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def scale(monkeypatch):
    """Set BEVCC_TEST_TIMEOUT_SCALE for this test (None: unset); the factor is measured again."""

    def set_scale(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(timeouts.SCALE_ENV, raising=False)
        else:
            monkeypatch.setenv(timeouts.SCALE_ENV, value)
        timeouts.machine_scale.cache_clear()

    yield set_scale
    timeouts.machine_scale.cache_clear()  # after monkeypatch restores the environment


@pytest.mark.parametrize("value, limit", [("3", 900.0), ("0.5", 150.0), (" 2 ", 600.0)])
def test_the_variable_multiplies_every_limit(scale, value, limit):
    scale(value)
    assert scaled_timeout(300) == limit


def test_zero_lifts_the_limits(scale):
    scale("0")
    assert scaled_timeout(300) is None


@pytest.mark.parametrize("value", ["fast", "-1", "inf", "nan"])
def test_a_bad_factor_is_one_line_saying_what_is_expected(scale, value):
    scale(value)
    with pytest.raises(ValueError) as info:
        scaled_timeout(300)
    assert str(info.value) == (
        f"BEVCC_TEST_TIMEOUT_SCALE={value!r}: expected a number >= 0 (the factor for every test "
        "time limit; 0 for none)"
    )


def test_measured_limits_are_never_shorter_than_on_the_reference_machine(scale):
    scale(None)
    assert timeouts.machine_scale() >= 1 and scaled_timeout(300) >= 300


def test_load_beyond_the_cores_lengthens_the_limits_in_proportion(monkeypatch):
    cores = len(timeouts.os.sched_getaffinity(0))
    monkeypatch.setattr(timeouts.os, "getloadavg", lambda: (0.5, 6.0 * cores, 2.0))
    assert timeouts._load_per_core() == 6.0  # the highest of the three averages, per core
    monkeypatch.setattr(timeouts.os, "getloadavg", lambda: (0.1, 0.2, 0.3))
    assert timeouts._load_per_core() == 1.0  # an idle machine is not faster than the reference


def test_run_bevcc_scales_its_limit(scale):
    """Its default (300 s on the reference machine) follows the factor: 3 ms cannot start bevcc."""
    scale("0.00001")
    with pytest.raises(subprocess.TimeoutExpired) as info:
        run_bevcc("--help")
    assert info.value.timeout == pytest.approx(300 * 0.00001)


def _test_sources():
    yield ROOT / "conftest.py"
    yield from sorted((ROOT / "tests").rglob("*.py"))
    yield from sorted(ROOT.glob("plugins/*/tests/**/*.py"))


def _name(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


LIMITS = ("timeout", "stall_seconds", "limit_seconds")  # subprocess's and run_watched's
# run_watched's own tests: their seconds are what the watchdog is tested on
WATCHDOG_TESTS = "tests/test_watchdog.py"


def _fixed_limits(text: str, name: str) -> list[str]:
    """Limits that do not scale: a LIMITS keyword that is not `scaled_timeout(...)`, except in
    calls of run_bevcc (which scales the seconds it is given)."""
    fixed = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call) or _name(node.func) == "run_bevcc":
            continue
        for keyword in node.keywords:
            value = keyword.value
            scaled = isinstance(value, ast.Call) and _name(value.func) == "scaled_timeout"
            if keyword.arg in LIMITS and not scaled:
                fixed.append(f"{name}:{value.lineno}")
    return fixed


def test_no_test_holds_a_fixed_time_limit():
    """A fixed limit fails a slow machine (the README main job hit 900 s at load 4-6 on 2 cores):
    a wait that can hang takes scaled_timeout(seconds); one that cannot takes none."""
    sources = list(_test_sources())
    assert len(sources) > 60 and ROOT / "conftest.py" in sources
    fixed = [
        line
        for path in sources
        if str(path.relative_to(ROOT)) != WATCHDOG_TESTS
        for line in _fixed_limits(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert fixed == []
    # what the check is for, so that it can fail
    sample = (
        "subprocess.run(['x'], timeout=900)\nrun_bevcc('x', timeout=600)\nf(timeout=LIMIT)\n"
        "subprocess.run(['x'], timeout=scaled_timeout(900))\n"
        "run_watched(['x'], stall_seconds=300, limit_seconds=scaled_timeout(9))\n"
    )
    assert _fixed_limits(sample, "sample.py") == ["sample.py:1", "sample.py:3", "sample.py:5"]


def test_the_readme_says_how_to_scale_the_limits():
    readme = (ROOT / "README.md").read_text()
    assert f"{timeouts.SCALE_ENV}=" in readme
