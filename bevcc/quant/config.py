"""Quant config: what each quantized layer gets, from defaults, per-op-type settings and overrides.

    calibrator = "histogram:percentile"   # top level: defaults for every layer
    percentile = 99.99
    [ops.conv_transpose]                   # per op type: conv, conv_transpose, linear, matmul
    per_channel = true
    [[overrides]]                          # in order, later wins; exact name or glob
    match = "head.*"
    enabled = false

TOML (.toml), YAML (.yaml/.yml) or a Python dict / QuantConfig. Names are FX module names (or node
names for functional matmuls) on the FX path and ONNX node names on the ONNX path. Inputs are
always quantized per tensor (TensorRT's rule); `per_channel` and the calibrator apply to weights
and inputs respectively (weights always use max, per output channel).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from bevcc.errors import InputError, UsageError
from bevcc.quant.calibrators import canonical

OP_TYPES = ("conv", "conv_transpose", "linear", "matmul")


@dataclass(frozen=True)
class QuantSpec:
    num_bits: int = 8
    per_channel: bool = True
    calibrator: str = "max"
    percentile: float = 99.99
    enabled: bool = True

    def updated(self, values: dict[str, Any], where: str) -> QuantSpec:
        known = {f.name: f.type for f in dataclasses.fields(self)}
        for key in values:
            if key not in known:
                raise UsageError(
                    f"{where}: unknown quant setting '{key}' (known: {', '.join(known)})"
                )
        spec = dataclasses.replace(self, **values)
        if spec.num_bits != 8:
            raise UsageError(f"{where}: num_bits must be 8 (TensorRT INT8)")
        if not 0 < spec.percentile <= 100:
            raise UsageError(f"{where}: percentile must be in (0, 100]")
        return dataclasses.replace(spec, calibrator=canonical(spec.calibrator))


@dataclass
class QuantConfig:
    default: QuantSpec = field(default_factory=QuantSpec)
    ops: dict[str, QuantSpec] = field(default_factory=dict)
    overrides: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def resolve(self, name: str, op_type: str) -> QuantSpec:
        spec = self.ops.get(op_type, self.default)
        for pattern, values in self.overrides:
            if name == pattern or fnmatch.fnmatchcase(name, pattern):
                spec = spec.updated(values, f"override '{pattern}'")
        return spec

    def unused_overrides(self, names) -> list[str]:
        """Override patterns that match none of `names` (likely typos)."""
        names = list(names)
        return [
            p
            for p, _ in self.overrides
            if not any(n == p or fnmatch.fnmatchcase(n, p) for n in names)
        ]

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "quant config") -> QuantConfig:
        data = dict(data)
        ops_data = data.pop("ops", {}) or {}
        overrides_data = data.pop("overrides", []) or []
        default = QuantSpec().updated(data, where)
        ops = {}
        for op, values in ops_data.items():
            if op not in OP_TYPES:
                raise UsageError(
                    f"{where}: unknown op type '{op}' in [ops] (known: {', '.join(OP_TYPES)})"
                )
            ops[op] = default.updated(dict(values), f"{where} [ops.{op}]")
        overrides = []
        for i, entry in enumerate(overrides_data):
            entry = dict(entry)
            pattern = entry.pop("match", None)
            if not isinstance(pattern, str) or not pattern:
                raise UsageError(f"{where}: overrides[{i}] needs `match` (a name or glob)")
            QuantSpec().updated(entry, f"{where} overrides[{i}]")  # validate keys now
            overrides.append((pattern, entry))
        return cls(default, ops, overrides)


def load_quant_config(source) -> QuantConfig:
    """A QuantConfig, a dict, or a path to .toml / .yaml / .yml."""
    if source is None:
        return QuantConfig()
    if isinstance(source, QuantConfig):
        return source
    if isinstance(source, dict):
        return QuantConfig.from_dict(source)
    path = Path(source)
    if not path.is_file():
        raise InputError(f"quant config {path} does not exist")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(path.read_text())
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise InputError(
                    f"quant config {path} is not valid YAML: {str(exc).splitlines()[0]}"
                ) from exc
        else:
            raise InputError(f"quant config {path}: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise InputError(f"quant config {path} is not valid: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"quant config {path}: expected a table of settings at the top")
    return QuantConfig.from_dict(data, str(path))
