"""Sensitivity analysis: which quantized layers cost accuracy, and which to keep float."""
