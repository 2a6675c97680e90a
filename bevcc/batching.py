"""Fit calibration/evaluation batches to the input shapes a model accepts.

Most ONNX files in the wild fix their batch (model-zoo files are 1x3x224x224), while users hold
N samples in one array. Samples are therefore streamed into batches of the model's static batch
size, as modelopt's ONNX quantizer does; a remainder that cannot fill a batch is reported and
left out (padding it with zeros would calibrate on data nobody gave). A dynamic batch takes the
arrays as given, or re-chunked to `batch_size` when one is asked for. Every other static
dimension must match: a wrong channel count or resolution is one error naming the input, the
expected and the given shape, never an onnxruntime failure deep inside a pass.

Only inputs whose first axis is a batch of samples are split. Inputs whose first axis is free in
the model (a voxel count, say) pass through untouched, so a sparse model's inputs never are.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from bevcc.errors import InputError

__all__ = ["CalibRemainderWarning", "run_in_batches"]

Shape = tuple[int | None, ...]


class CalibRemainderWarning(UserWarning):
    """Samples left over after the last full batch were not used."""


def shape_text(shape: Sequence) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


class FittedBatches:
    """Re-iterable batches of `source` in the shapes `expected` gives (input name -> dims).

    `expected` names the model's inputs; a dim of None is free. `batch_size` re-chunks inputs
    whose batch is free (it must equal the static batch where there is one). After a full
    iteration `dropped` holds the number of samples the last incomplete batch would have had.
    `description` names the data in errors (default: the source's own description).

    Code that batches data its own way (run_in_batches) asks the same questions through
    `batched_inputs`, `sample_count` and `check`.
    """

    def __init__(
        self,
        source,
        expected: Mapping[str, Shape],
        batch_size: int | None = None,
        description: str | None = None,
    ):
        if batch_size is not None and batch_size < 1:
            raise InputError(f"calibration batch size {batch_size} must be at least 1")
        self.source = source
        self.description = description or getattr(source, "description", "the given batches")
        self.expected = {name: tuple(dims) for name, dims in expected.items()}
        self.batch_size = _target_batch(self.expected, batch_size, self.description)
        # A free first axis is a batch only when the user asked for one and no input fixes it;
        # beside a static batch it is something else (a voxel or point count).
        self._free_is_batch = self.batch_size is not None and not any(
            dims and dims[0] is not None for dims in self.expected.values()
        )
        self.dropped = 0
        self.used_samples = 0
        self._warned = False  # calibration may iterate several times; say it once

    # CalibData's interface, so every consumer takes either.
    @property
    def input_names(self):
        return getattr(self.source, "input_names", None)

    @input_names.setter
    def input_names(self, names) -> None:
        self.source.input_names = names

    def first(self) -> dict:
        return next(iter(self))

    def __iter__(self) -> Iterator[dict]:
        buffer: list[dict] = []  # source batches (or their tails) not yet emitted
        held = 0
        self.dropped = self.used_samples = 0
        emitted = 0
        for index, batch in enumerate(self.source):
            self.check(batch, index)
            if self.batch_size is None:
                emitted += 1
                yield batch
                continue
            size = self.sample_count(batch, index)
            buffer.append(batch)
            held += size
            while held >= self.batch_size:
                out, buffer, held = _take(buffer, self.batch_size, self.batched_inputs)
                self.used_samples += self.batch_size
                emitted += 1
                yield out
        if held:
            self.dropped = held
            if emitted == 0:
                raise InputError(
                    f"calibration data {self.description} has {held} sample(s), "
                    f"fewer than the model's batch of {self.batch_size}; give at "
                    f"least {self.batch_size}"
                )
            if self._warned:
                return
            self._warned = True
            warnings.warn(
                f"calibration data {self.description}: the last {held} sample(s) do "
                f"not fill a batch of {self.batch_size} and were not used; give a "
                f"multiple of {self.batch_size} samples",
                CalibRemainderWarning,
                stacklevel=2,
            )

    @property
    def batched_inputs(self) -> list[str]:
        """The inputs whose first axis holds samples, split into batches of `batch_size`
        (none when the batch is taken as given); the others pass through whole."""
        return [name for name, dims in self.expected.items() if self._batched(dims)]

    def _batched(self, dims: Shape) -> bool:
        """Is the input's first axis the one split into batches?"""
        if not dims or self.batch_size is None:
            return False
        return dims[0] == self.batch_size if dims[0] is not None else self._free_is_batch

    def sample_count(self, batch: Mapping[str, np.ndarray], index: int = 0) -> int:
        """How many samples `batch` (the `index`-th of the data, for errors) holds in its
        batched inputs; inputs missing or disagreeing on the count are one InputError."""
        missing = [name for name in self.batched_inputs if name not in batch]
        if missing:  # nothing to count samples by: say so here, not as an empty stream later
            raise InputError(
                f"calibration batch {index} of {self.description} lacks input(s) "
                f"{', '.join(missing)}; it has {', '.join(batch) or 'no arrays'}"
            )
        counts = {name: batch[name].shape[0] for name in self.batched_inputs}
        if len(set(counts.values())) > 1:
            given = ", ".join(f"{n} {c}" for n, c in counts.items())
            raise InputError(
                f"calibration batch {index} of {self.description} has different "
                f"sample counts per input ({given}); give every input the same "
                "number of samples"
            )
        return next(iter(counts.values()), 0)

    def check(self, batch: Mapping[str, np.ndarray], index: int = 0) -> None:
        """Raise one InputError naming the input, expected and given shape if an array of
        `batch` does not fit the model (a batched input's first axis may hold any count)."""
        for name, dims in self.expected.items():
            if name not in batch:
                continue  # the consumer names missing inputs with its own context
            given = np.shape(batch[name])
            batch_free = self._batched(dims)
            if len(given) == len(dims) and all(
                d is None or d == g or (axis == 0 and batch_free)
                for axis, (d, g) in enumerate(zip(dims, given, strict=True))
            ):
                continue
            raise InputError(
                f"calibration batch {index} of {self.description}: input '{name}' "
                f"has shape {shape_text(given)}, the model expects "
                f"{shape_text(dims)}; give arrays of that shape (the first axis "
                "may hold any number of samples when it is the batch)"
            )


def fit_batches(source, expected: Mapping[str, Shape] | None, batch_size: int | None = None):
    """`source` fitted to `expected`, or `source` itself when nothing needs fitting."""
    if source is None or isinstance(source, FittedBatches):
        return source
    if batch_size is None:
        batch_size = getattr(source, "batch_size", None)
    if not expected or (
        batch_size is None and all(dims and dims[0] is None for dims in expected.values())
    ):
        return source
    return FittedBatches(source, expected, batch_size)


def fx_input_shapes(ir) -> dict[str, Shape] | None:
    """What an FX model accepts: the dims its shape specialization fixed (`fixed_input_shapes`),
    else only the example inputs' ranks: a traced module without folded shapes takes any batch
    and resolution, so only `--calib-batch-size` re-chunks its data."""
    fixed = getattr(ir, "fixed_input_shapes", None)
    if fixed:
        return fixed
    examples = getattr(ir, "example_inputs", None)
    if not examples:
        return None
    names = [n.name for n in ir.graph.nodes if n.op == "placeholder"]
    return {
        name: (None,) * len(example.shape)
        for name, example in zip(names, examples, strict=True)
        if hasattr(example, "shape") and len(example.shape)
    }


def _target_batch(expected: dict[str, Shape], asked: int | None, description: str) -> int | None:
    """The batch size to emit: the model's static batch, else the asked one, else None."""
    static = {name: dims[0] for name, dims in expected.items() if dims and dims[0] is not None}
    sizes = set(static.values())
    if len(sizes) > 1 and asked is None:
        return None  # inputs disagree on their first axis: it is not a shared batch axis
    if len(sizes) == 1:
        size = sizes.pop()
        if asked is not None and asked != size:
            names = ", ".join(static)
            raise InputError(
                f"--calib-batch-size {asked} for {description}, but the model's "
                f"input(s) {names} have a static batch of {size}; drop the option "
                "or re-export the model with a dynamic batch"
            )
        return size
    return asked


def _take(buffer: list[dict], count: int, names: list[str]) -> tuple[dict, list[dict], int]:
    """The first `count` samples of the buffered batches, and the rest of the buffer."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    others: dict = {}
    need = count
    rest: list[dict] = []
    for batch in buffer:
        if need == 0:
            rest.append(batch)
            continue
        size = next((batch[n].shape[0] for n in names if n in batch), 0)
        take = min(size, need)
        for name in names:
            if name in batch:
                parts[name].append(batch[name][:take])
        for name, value in batch.items():
            if name not in parts:
                others.setdefault(name, value)
        if take < size:
            rest.append({n: (v[take:] if n in parts else v) for n, v in batch.items()})
        need -= take
    out = {
        name: (chunks[0] if len(chunks) == 1 else np.concatenate(chunks))
        for name, chunks in parts.items()
        if chunks
    }
    out.update(others)
    held = sum(next((b[n].shape[0] for n in names if n in b), 0) for b in rest)
    return out, rest, held


def run_in_batches(session, feed: Mapping[str, np.ndarray], description: str = "the inputs"):
    """Run an onnxruntime session on `feed` whose batched inputs may hold any number of samples.

    Evaluation (`bevcc evaluate`, sensitivity) needs an output for every sample, so unlike
    calibration the last partial batch runs too: it is filled up with copies of its own last
    sample, whose outputs are cut off again (a model in eval mode computes each sample alone).
    """
    expected = {
        i.name: tuple(d if isinstance(d, int) else None for d in i.shape)
        for i in session.get_inputs()
    }
    fitted = FittedBatches([dict(feed)], expected, description=description)
    fitted.check(feed)
    if fitted.batch_size is None:
        return session.run(None, dict(feed))
    size, names, count = fitted.batch_size, fitted.batched_inputs, fitted.sample_count(feed)
    parts: list[list[np.ndarray]] = []
    for start in range(0, count, size):
        chunk = {}
        for name, value in feed.items():
            if name not in names:
                chunk[name] = value
                continue
            piece = value[start : start + size]
            if len(piece) < size:  # the last partial batch, filled with its own last sample
                piece = np.concatenate([piece, np.repeat(piece[-1:], size - len(piece), 0)])
            chunk[name] = piece
        parts.append(session.run(None, chunk))
    if count == size:
        return parts[0]
    return [np.concatenate([p[i] for p in parts])[:count] for i in range(len(parts[0]))]
