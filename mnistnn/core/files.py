"""Atomic file writes and content hashes: a crash never leaves a partial file at a final path."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: Prefix of in-flight temp files: never a storage key, never listed, removed by
#: `clean_temp_files`.
TEMP_PREFIX = ".tmp-"
_CHUNK = 1 << 20


@contextlib.contextmanager
def temp_beside(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[tuple[IO[Any], str]]:
    """An open temp file beside `path` (same folder, so a rename onto `path` is atomic) and its
    name; flushed and fsynced when the block ends, removed if it fails.

    The one place a temp file is made: `atomic_write` renames it into place; the local store
    links or renames it under its own lock (`storage_local`). Its name starts with TEMP_PREFIX,
    which no key or listing ever shows.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX + final.name + ".", dir=final.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle, tmp_name
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        unlink_quietly(tmp_name)
        raise


def write_temp(path: str | os.PathLike[str], data: bytes) -> str:
    """The name of a fsynced temp file holding `data` beside `path` (`temp_beside`)."""
    with temp_beside(path) as (handle, tmp_name):
        handle.write(data)
    return tmp_name


def unlink_quietly(path: str | os.PathLike[str]) -> None:
    """Remove a file that may already be gone (a temp file after its rename)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on success flush, fsync and `os.replace` it into place.

    On any exception the temp file is removed and `path` is left as it was.
    """
    final = Path(path)
    with temp_beside(final, mode) as (handle, tmp_name):
        yield handle
    try:
        os.replace(tmp_name, final)
    except BaseException:
        unlink_quietly(tmp_name)
        raise
    fsync_dir(final.parent)


def fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON to `path` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def clean_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove leftovers of interrupted atomic writes in `directory`; return what was removed."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    removed = []
    for leftover in folder.glob(TEMP_PREFIX + "*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed.append(leftover)
    return removed


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()
