"""One exclusive lock: `flock` with a deadline, released by the OS when its holder dies.

Every writer that must be alone (a run folder, the registry, an ingest folder) takes this lock.
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
) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a file, created if missing, or a directory).

    `timeout=None` waits for as long as it takes; otherwise, after `timeout` seconds, raise
    `on_timeout(timeout)` (or a MnistnnError naming the path).
    """
    target = Path(path)
    if target.is_dir():
        fd = os.open(target, os.O_RDONLY)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            _acquire_before(fd, time.monotonic() + timeout, poll, target, timeout, on_timeout)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


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
