"""Atomic output: build a file (or a directory) beside the target, then rename it over it.

tempfile makes its files 0600 and its directories 0700 whatever the umask, and a rename keeps
the mode: both are set to what `open` and `mkdir` would give (0644 and 0755 under umask 022), so
a trtexec run by another user or in a container can read what bevcc wrote.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except OSError as exc:
        os.unlink(tmp)
        raise InputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except OSError as exc:  # disk full, file-size limit, permissions changed mid-way ...
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise InputError(
            f"writing {target} failed half-way ({exc.strerror or exc}); nothing was "
            "written: check free space, quotas and permissions"
        ) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process's umask. Linux shows it in /proc; elsewhere it is read by setting it and
    setting it back, which a thread creating a file in between would see."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike):
    """Yield a new empty directory beside `target`; on success it replaces `target` whole.

    The directory is a sibling (same parent, so the final rename stays on one file system). On any
    failure inside the block it is removed, as are parent directories made for it, and `target`
    is left as it was. An existing `target` is swapped out by two renames and then deleted: for an
    instant between them no directory has the target's name (POSIX has no portable exchange).
    """
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    made = _missing_parents(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        _remove_empty(made)
        raise InputError(
            f"cannot write {target}: {exc.strerror or exc}; choose a writable output directory"
        ) from exc
    try:
        tmp.chmod(0o777 & ~current_umask())
        yield tmp
        try:
            _swap_in(tmp, target)
        except OSError as exc:
            raise InputError(
                f"replacing {target} failed ({exc.strerror or exc}); it was left "
                "as it was: check permissions on it and its parent"
            ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made)
        raise


def _swap_in(new: Path, target: Path) -> None:
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    try:
        os.replace(target, old)  # rename(2) may replace an empty directory
    except OSError:
        old.rmdir()
        raise
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _missing_parents(path: Path) -> list[Path]:
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing  # deepest first


def _remove_empty(directories: list[Path]) -> None:
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()
