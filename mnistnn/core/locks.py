"""One exclusive lock: `flock` with a deadline, released by the OS when its holder dies.

Every writer that must be alone (a run folder, the registry, an ingest folder, a local lease, a
local store's conditional write) takes this lock.
`flock` locks belong to an open file description, so a holder killed by SIGKILL never leaves a
stale lock behind; and a directory can be locked itself, which leaves no lock file behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mnistnn.errors import MnistnnError


@contextlib.contextmanager
def exclusive(
    path: str | os.PathLike[str],
    *,
    timeout: float | None,
    on_timeout: Callable[[float], MnistnnError] | None = None,
    poll: float = 0.02,
    create: bool = True,
) -> Iterator[int]:
    """Hold an exclusive lock on `path` (a file, created if missing, or a directory); yield its fd.

    `timeout=None` waits for as long as it takes; otherwise, after `timeout` seconds, raise
    `on_timeout(timeout)` (or a MnistnnError naming the path). `create=False` locks only a file
    that exists (opened read-only): FileNotFoundError if there is none. The lock is always on the
    file `path` names once it is granted: a file renamed over or deleted while this waited is
    opened again and waited for (within the same deadline), as renaming over a locked file is
    how the local store replaces one (`storage_local`).
    """
    target = Path(path)
    started = time.monotonic()
    while True:
        directory = target.is_dir()
        fd = _open(target, directory, create)
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                _acquire_before(fd, started + timeout, poll, target, timeout, on_timeout)
            # a directory is never renamed over, and one removed would come back as a file
            if directory or same_file(fd, target):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (not renamed over or deleted)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _open(target: Path, directory: bool, create: bool) -> int:
    if directory or not create:
        return os.open(target, os.O_RDONLY)  # flock needs no write access
    target.parent.mkdir(parents=True, exist_ok=True)
    return os.open(target, os.O_RDWR | os.O_CREAT, 0o644)


def _acquire_before(
    fd: int,
    deadline: float,
    poll: float,
    target: Path,
    timeout: float,
    on_timeout: Callable[[float], MnistnnError] | None,
) -> None:
    """Poll a non-blocking flock until it is ours or the deadline passes."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                if on_timeout is not None:
                    raise on_timeout(timeout) from None
                raise MnistnnError(
                    f"{target}: still locked by another process after {timeout:g} s"
                ) from None
            time.sleep(poll)
