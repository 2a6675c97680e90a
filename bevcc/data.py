"""Calibration/example data: an .npz, a directory of .npz, or a `file.py:callable` or
`package.module:callable` reference giving batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from bevcc.errors import InputError
from bevcc.loading import call_user, is_callable_ref, load_callable

Batch = dict[str, np.ndarray]


class CalibData:
    """Re-iterable source of batches, each a dict input-name -> array (first axis = batch).

    Positional batches (a tuple/list, or a single array) get their names from `input_names`
    when the model is known; until then they are keyed "0", "1", ...
    """

    def __init__(
        self,
        source: str | Path | Iterable,
        description: str | None = None,
        batch_size: int | None = None,
    ):
        self.source = source
        # Samples per batch for a model whose batch is free (bevcc.batching); a static batch
        # always wins, and the data is split to it whatever this says.
        self.batch_size = batch_size
        self.description = description or (
            str(source) if isinstance(source, (str, Path)) else "the given batches"
        )
        self.input_names: list[str] | None = None

    def __iter__(self) -> Iterator[Batch]:
        count = 0
        for index, raw in enumerate(self._raw_batches()):
            yield self._normalise(raw, index)
            count += 1
        if count == 0:
            raise InputError(
                f"calibration data {self.description} has no batches; give at least "
                "one .npz or a callable that yields batches"
            )

    def first(self) -> Batch:
        return next(iter(self))

    def _raw_batches(self) -> Iterable:
        source = self.source
        if isinstance(source, (str, Path)) and not (
            isinstance(source, str) and is_callable_ref(source)
        ):
            path = Path(source)
            if path.is_dir():
                files = sorted(path.glob("*.npz"))
                return (_read_npz(f) for f in files)
            if path.suffix == ".npz":
                return iter([_read_npz(path)])
            raise InputError(
                f"calibration data {path}: expected an .npz file, a directory of "
                ".npz files, or file.py:callable / package.module:callable"
            )
        if isinstance(source, str):
            fn = load_callable(source, "calibration data")
            produced = call_user(fn, source, "calibration data")
            if not isinstance(produced, Iterable):
                raise InputError(
                    f"calibration data '{source}' returned {type(produced).__name__}; "
                    "return an iterable of batches"
                )
            return produced
        return source

    def _normalise(self, raw, index: int) -> Batch:
        if isinstance(raw, dict):
            items = list(raw.items())
        else:
            values = list(raw) if isinstance(raw, (tuple, list)) else [raw]
            names = self.input_names or [str(i) for i in range(len(values))]
            if len(names) != len(values):
                raise InputError(
                    f"calibration batch {index} of {self.description} has "
                    f"{len(values)} arrays but the model takes {len(names)} inputs "
                    f"({', '.join(names)})"
                )
            items = list(zip(names, values, strict=True))
        batch = {}
        for name, value in items:
            array = _to_numpy(value)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                bad = "NaN" if np.isnan(array).any() else "inf"
                raise InputError(
                    f"calibration batch {index} input '{name}' of {self.description} "
                    f"contains {bad}; clean or drop that batch"
                )
            batch[str(name)] = array
        return batch


def _read_npz(path: Path) -> Batch:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"calibration file {path} is not a readable .npz ({exc})") from exc


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)
