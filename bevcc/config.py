"""`bevcc compile --config FILE`: a TOML file holding the compile arguments.

One model: top-level `input`, `pipeline`, `calib`, `output`. A set of deployable files: an array
of `[[files]]` tables, one per file, with the top-level `pipeline` and `calib` as their defaults
and `output` the directory they are written to (docs/deploy_sets.md).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from bevcc.errors import UsageError
from bevcc.loading import is_callable_ref

__all__ = ["CompileConfig", "FileSpec", "load_config"]

KEYS = ("input", "pipeline", "calib", "output", "fp16_set", "evaluate", "device")
SET_ONLY_KEYS = ("fp16_set", "evaluate")
FILE_KEYS = ("name", "input", "calib", "pipeline", "precision", "trtexec")
PRECISIONS = ("int8", "fp16", "fp32", "libspconv")
# A name becomes `DIR/<name>.onnx`, `<name>.plan` in a shell script and `reports/<name>/`:
# keep it to characters that need no quoting anywhere and cannot leave DIR.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class FileSpec:
    """One deployable file of a set config (a `[[files]]` table), defaults already applied."""

    name: str  # written as DIR/<name>.onnx
    input: str
    pipeline: str
    precision: str  # int8 | fp16 | fp32 | libspconv: how the engine is built from the file
    calib: str | None = None
    trtexec: str = ""  # extra trtexec flags, shell words


@dataclass
class CompileConfig:
    input: str | None = None
    pipeline: str | None = None
    calib: str | None = None
    output: str | None = None
    files: list[FileSpec] = field(default_factory=list)  # a set config when not empty
    fp16_set: bool = False  # also write DIR/fp16/: every file without its quantization passes
    evaluate: str | None = None  # callable that runs the written files (`bevcc evaluate DIR`)
    device: str | None = None  # cpu | cuda | cuda:N | auto (bevcc/device.py); --device wins
    source: str | None = None  # the config file, for messages and reports

    @property
    def is_set(self) -> bool:
        return bool(self.files)


def load_config(path: str | Path) -> CompileConfig:
    """Read a config; relative paths in it are relative to the config file, not the shell."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config {path}: not valid TOML ({exc})") from None
    tables = data.pop("files", None)
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise UsageError(
            f"config {path}: unknown key(s) {', '.join(unknown)}; known: "
            f"{', '.join(KEYS)} (and [[files]] tables for a set of files)"
        )
    for key, value in data.items():
        wanted = bool if key == "fp16_set" else str
        if not isinstance(value, wanted):
            kind = "true or false" if wanted is bool else "a string"
            raise UsageError(f"config {path}: '{key}' must be {kind}")
    if tables is None and any(key in data for key in SET_ONLY_KEYS):
        raise UsageError(
            f"config {path}: {', '.join(k for k in SET_ONLY_KEYS if k in data)} "
            "only apply to a set config ([[files]] tables)"
        )
    if "device" in data:
        from bevcc.device import DeviceError, check_device

        try:
            check_device(data["device"])
        except DeviceError as exc:
            raise UsageError(f"config {path}: {exc}") from None
    config = CompileConfig(**data, source=str(path))
    for key in ("input", "calib", "evaluate"):
        value = getattr(config, key)
        if value is not None:
            setattr(config, key, _relative_to(path.parent, value))
    if config.pipeline is not None:
        config.pipeline = _pipeline_files_relative_to(path.parent, config.pipeline)
    if config.output is not None:  # always a path (a bare `set` too), never a model name
        config.output = _resolve(path.parent, config.output)
    if tables is not None:
        config.files = _parse_files(path, tables, config)
        check_files(config.files, f"config {path}")
    return config


def _parse_files(path: Path, tables, config: CompileConfig) -> list[FileSpec]:
    if isinstance(tables, dict):
        raise UsageError(
            f"config {path}: 'files' is one table; write [[files]] (double "
            "brackets), one table per deployable file"
        )
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise UsageError(f"config {path}: 'files' must be one or more [[files]] tables")
    if config.input is not None:
        raise UsageError(
            f"config {path}: a set config takes `input` in each [[files]] table, "
            "not at the top level; move it into the tables"
        )
    specs = []
    for index, table in enumerate(tables, 1):
        where = f"config {path}: [[files]] entry {index}"
        if isinstance(table.get("name"), str):
            where += f" ('{table['name']}')"
        unknown = sorted(set(table) - set(FILE_KEYS))
        if unknown:
            raise UsageError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(FILE_KEYS)}"
            )
        for key, value in table.items():
            if not isinstance(value, str):
                raise UsageError(f"{where}: '{key}' must be a string")
        values = {"pipeline": config.pipeline, "calib": config.calib, **table}
        for key in ("name", "input", "pipeline", "precision"):
            if not values.get(key):
                hint = " (or a top-level default)" if key == "pipeline" else ""
                raise UsageError(
                    f"{where}: missing '{key}'; add {key} = \"...\" to the table{hint}"
                )
        for key in ("input", "calib"):
            if values.get(key) is not None:
                values[key] = _relative_to(path.parent, values[key])
        values["pipeline"] = _pipeline_files_relative_to(path.parent, values["pipeline"])
        specs.append(FileSpec(**values))
    return specs


def check_files(files: list[FileSpec], where: str) -> None:
    """The checks a set config's entries pass however they were made (TOML or Python)."""
    if not files:
        raise UsageError(f"{where}: no files; a set needs at least one [[files]] entry")
    seen = set()
    for index, spec in enumerate(files, 1):
        entry = f"{where}: [[files]] entry {index} ('{spec.name}')"
        if not isinstance(spec.name, str) or not _NAME.fullmatch(spec.name):
            raise UsageError(
                f"{entry}: name must be letters, digits, '.', '_' or '-' (not "
                "starting with '.' or '-'), since it names DIR/<name>.onnx"
            )
        if spec.name.endswith(".onnx"):
            raise UsageError(
                f"{entry}: give the name without '.onnx' (the file is written as DIR/<name>.onnx)"
            )
        if spec.name in seen:
            raise UsageError(f"{entry}: name used twice; each file needs its own name")
        seen.add(spec.name)
        if not spec.input or not spec.pipeline:
            raise UsageError(f"{entry}: needs an input and a pipeline")
        if spec.precision not in PRECISIONS:
            raise UsageError(
                f"{entry}: precision '{spec.precision}' is not one of {', '.join(PRECISIONS)}"
            )
        try:
            shlex.split(spec.trtexec or "")
        except ValueError as exc:
            raise UsageError(
                f"{entry}: trtexec flags are not valid shell words ({exc}); check the quotes"
            ) from None
        if spec.trtexec and spec.precision == "libspconv":
            raise UsageError(
                f"{entry}: trtexec flags given, but libspconv loads this file "
                "itself and no engine is built; remove trtexec"
            )


def _relative_to(base: Path, value: str) -> str:
    if is_callable_ref(value):
        location, _, attr = value.rpartition(":")
        if not location.endswith(".py"):
            return value  # package.module:callable names no file
        return _resolve(base, location) + ":" + attr
    if "/" in value or Path(value).suffix:
        return _resolve(base, value)
    return value  # a registered model name


def _pipeline_files_relative_to(base: Path, text: str) -> str:
    """A pass option naming a file beside the config (`qdq_insert{config=head_quant.toml}`)
    names it wherever bevcc runs, as input and calib do. Only values with a path separator or a
    suffix that name an existing file there change; a text that does not parse is left for the
    pipeline check to report."""
    from bevcc.errors import BevccError
    from bevcc.pm.pipeline import IRGroup, parse_pipeline

    try:
        pipeline = parse_pipeline(text)
    except BevccError:
        return text
    changed = False
    for element in pipeline.elements:
        for step in element.steps if isinstance(element, IRGroup) else [element]:
            for index, (key, value) in enumerate(step.options):
                names_a_file = "/" in value or Path(value).suffix
                if names_a_file and not Path(value).is_absolute() and (base / value).is_file():
                    step.options[index] = (key, str(base / value))
                    changed = True
    return pipeline.text() if changed else text


def _resolve(base: Path, location: str) -> str:
    return location if Path(location).is_absolute() else str(base / location)
