"""Atomic file output: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from bevcc.errors import InputError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike):
    """Yield a temporary path next to `target`; on success it is renamed onto `target`.

    A failure anywhere inside the block removes the temporary file, so no half-written output is
    ever visible under the target's name.
    """
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise InputError(
            f"cannot write {target}: {exc.strerror or exc}; choose a writable output path"
        ) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except OSError as exc:  # disk full, file-size limit, permissions changed mid-way ...
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise InputError(f"writing {target} failed half-way ({exc.strerror or exc}); nothing was "
                         "written: check free space, quotas and permissions") from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))
