"""Test helpers for bevcc and its plugins: golden-graph comparison (also a pytest plugin)."""

from bevcc.testing.golden import GoldenMismatch, compare_golden

__all__ = ["GoldenMismatch", "compare_golden"]
