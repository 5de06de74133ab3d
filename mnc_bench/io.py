"""Atomic file writes: a crash or kill never leaves a half-written file where a complete one is expected.

Temporary files and folders are created with the permissions a plain ``open`` / ``mkdir`` would give
(0666 / 0777 minus the umask), not ``tempfile``'s private 0600 / 0700: what we write (datasets, predictions,
results) is meant to be read by others on a shared machine whenever the umask allows it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

from mnc_bench.errors import UserError

T = TypeVar("T")
_ATTEMPTS = 100


def _create_beside(path: Path, suffix: str, create: Callable[[str], T]) -> tuple[str, T]:
    """Create a new hidden sibling of ``path`` with ``create(name)`` under a random name that is not taken."""
    for _ in range(_ATTEMPTS):
        name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}")
        try:
            return name, create(name)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (a rename in it) to disk; a no-op where directories cannot be opened."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cannot_write(path: str | os.PathLike[str], exc: OSError) -> UserError:
    """The one-line error for an output ``path`` the operating system refused (no such place, not
    writable, a file where a folder must be, ...)."""
    return UserError(f"cannot write {path}: {exc.strerror or exc}")


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a folder, created with its parents where missing; a UserError naming it where it cannot
    be one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"cannot write {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    return path


def make_staging_dir(path: str | os.PathLike[str]) -> Path:
    """A new empty folder beside ``path`` (mode 0777 & ~umask) to build ``path`` in, then rename into
    place."""
    path = Path(path)
    ensure_dir(path.parent)
    try:
        name, _ = _create_beside(path, ".tmp", lambda name: os.mkdir(name, 0o777))
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    return Path(name)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block finishes.

    The file gets mode 0666 & ~umask, like ``open(path, "w")``. Where the operating system refuses the
    file (its folder cannot be made, the path is a folder, ...) a UserError names ``path``.
    """
    path = Path(path)
    ensure_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        tmp_name, fd = _create_beside(path, ".tmp", lambda name: os.open(name, flags, 0o666))
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.replace(tmp_name, path)
        except OSError as exc:
            raise cannot_write(path, exc) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = None,
               nan_as_null: bool = False) -> None:
    """Write ``obj`` as JSON to ``path`` atomically; with ``nan_as_null``, NaN and infinities as null, so the
    file is strict JSON that any reader takes."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(_nan_as_null(obj) if nan_as_null else obj, handle, indent=indent)


def _nan_as_null(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, Mapping):
        return {key: _nan_as_null(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_nan_as_null(value) for value in data]
    return data


def check_writable_output(path: str | os.PathLike[str], kind: str, *, directory: bool = False) -> None:
    """Fail early, in one line, if ``path`` cannot be written as the output ``kind`` (e.g. "--out").

    For a file: ``path`` must not be a directory and its nearest existing parent must be a writable directory
    (missing folders are created later). For a directory (``directory=True``): ``path`` must not be a file,
    and it or its nearest existing parent must be a writable directory. Nothing is created here.
    """
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise UserError(f"{kind} {path}: exists and is not a directory")
    if not directory and path.is_dir():
        raise UserError(f"{kind} {path}: is a directory, expected a file path")
    existing = path if directory and path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{kind} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{kind} {path}: directory {existing} is not writable")
