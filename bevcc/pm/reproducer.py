"""--reproducer DIR: when a pass fails, DIR gets the IR before that pass (input.onnx / input.pt),
the pipeline from that pass on (pipeline.txt) and the `bevcc compile` command that reruns it
(README.txt), so a failure deep in a long pipeline can be handed on as three files. For a set
config, the failing file's reproducer goes to DIR/<file name>/ (the set stops at its first failing
file, so DIR holds one), and DIR is still replaced whole.

Passes change the IR in place, so the IR before a pass is only known by saving it before every
pass: with --reproducer each step starts with one IR.save into a private temporary directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TextIO

from bevcc.atomic import atomic_directory
from bevcc.errors import BevccError, UsageError
from bevcc.pm.instrument import Instrumentation
from bevcc.pm.pipeline import IRGroup, Pipeline

README = "README.txt"
PIPELINE = "pipeline.txt"
_TITLE = "bevcc reproducer"


def pipeline_from(pipeline: Pipeline, index: int) -> Pipeline:
    """The pipeline from its `index`-th step on, IR groups kept as written (cut where needed)."""
    elements, seen = [], 0
    for element in pipeline.elements:
        steps = element.steps if isinstance(element, IRGroup) else [element]
        if seen + len(steps) > index:
            cut = max(0, index - seen)
            elements.append(
                IRGroup(element.ir, steps[cut:]) if isinstance(element, IRGroup) else element
            )
        seen += len(steps)
    return Pipeline(elements)


def check_replaceable(directory: Path) -> None:
    """DIR is replaced whole on failure: only a new, empty or earlier reproducer directory."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise UsageError(f"--reproducer {directory}: it is a file; name a directory")
    if any(directory.iterdir()) and not _is_reproducer(directory):
        raise UsageError(
            f"--reproducer {directory}: the directory holds other files and would "
            "be replaced whole; name a new or empty directory"
        )


def _is_reproducer(directory: Path) -> bool:
    """An earlier reproducer: its README says so, or (a set's) it holds only reproducers."""
    readme = directory / README
    if readme.is_file():
        return readme.read_text(errors="replace").startswith(_TITLE)
    entries = list(directory.iterdir())
    return bool(entries) and all(p.is_dir() and _is_reproducer(p) for p in entries)


class Reproducer(Instrumentation):
    """Writes DIR (atomically, only when a pass fails) as the module docstring says.

    `calib` and `calib_batch_size` are put in the command as the user gave them; calibration
    data given in-process (not a path or reference) cannot be, and README.txt says so.
    `subdirectory` (a set's file name): the files go to DIR/<subdirectory>/, DIR replaced whole.
    """

    def __init__(
        self,
        directory,
        pipeline: Pipeline,
        *,
        calib=None,
        calib_batch_size: int | None = None,
        verify_each: bool = True,
        stream: TextIO | None = None,
        subdirectory: str | None = None,
        device: str = "cpu",
    ):
        self.root = Path(directory)  # what is replaced whole
        check_replaceable(self.root)
        self.subdirectory = subdirectory
        self.directory = self.root / subdirectory if subdirectory else self.root
        self.pipeline = pipeline
        self.calib = calib
        self.calib_batch_size = calib_batch_size
        self.verify_each = verify_each
        self.device = device  # the compile's, resolved: a failure on a GPU reruns on it
        self.stream = stream
        self._saved: tempfile.TemporaryDirectory | None = None
        self._unsaved: str | None = None  # why the IR before the current step could not be saved

    def before_pass(self, step, ir) -> None:
        if self._saved is None:
            self._saved = tempfile.TemporaryDirectory(prefix="bevcc-reproducer-")
        for old in Path(self._saved.name).iterdir():  # the previous step's IR (and its .data)
            old.unlink()
        self._unsaved = None
        try:
            ir.save(Path(self._saved.name) / f"input{ir.default_suffix}")
        except Exception as exc:  # noqa: BLE001 (the compile goes on; only the reproducer is lost)
            self._unsaved = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"

    def after_pipeline(self, ir, records) -> None:
        self._cleanup()

    def after_failure(self, step, ir, error, returned: bool) -> None:
        try:
            if self._unsaved is not None:
                raise UsageError(f"the IR before {step.label} could not be saved ({self._unsaved})")
            self._write(step, error)
        except (BevccError, OSError) as exc:  # the pass error that follows matters most
            warnings.warn(f"no reproducer written to {self.directory}: {exc}", stacklevel=2)
        finally:
            self._cleanup()

    def _write(self, step, error) -> None:
        saved = sorted(Path(self._saved.name).iterdir())
        model = next(p.name for p in saved if p.name.startswith("input."))
        rest = pipeline_from(self.pipeline, step.index).text()
        with atomic_directory(self.root) as root:
            tmp = root / self.subdirectory if self.subdirectory else root
            tmp.mkdir(parents=True, exist_ok=True)
            for path in saved:
                shutil.move(path, tmp / path.name)
            (tmp / PIPELINE).write_text(rest + "\n")
            (tmp / README).write_text(self._readme(step, error, model, rest))
        if self.stream is not None:
            self.stream.write(
                f"wrote reproducer {self.directory} (the command that reruns "
                f"{step.label} is in {self.directory / README})\n"
            )
            self.stream.flush()

    def command(self, model: str, pipeline_text: str) -> str:
        words = ["bevcc", "compile", str(self.directory / model), "--pipeline", pipeline_text]
        if isinstance(self.calib, (str, os.PathLike)):
            words += ["--calib", str(self.calib)]
        if self.calib_batch_size is not None:
            words += ["--calib-batch-size", str(self.calib_batch_size)]
        if not self.verify_each:
            words.append("--no-verify")
        if self.device != "cpu":
            words += ["--device", self.device]
        return shlex.join([*words, "-o", str(self.directory / "output")])

    def _readme(self, step, error, model: str, rest: str) -> str:
        lines = [
            f"{_TITLE}: {error}",
            "",
            f"{model}: the IR before {step.label}, as bevcc saved it",
            f"{PIPELINE}: the pipeline from {step.label} on",
            "",
        ]
        if self.calib is not None and not isinstance(self.calib, (str, os.PathLike)):
            lines += [
                (
                    "The calibration data was given in-process, not as a path: add --calib "
                    "with the same data to the command."
                ),
                "",
            ]
        lines += [
            f"Run in {shlex.quote(os.getcwd())} (paths are as they were given there):",
            self.command(model, rest),
        ]
        return "\n".join(lines) + "\n"

    def _cleanup(self) -> None:
        if self._saved is not None:
            self._saved.cleanup()
            self._saved = None
