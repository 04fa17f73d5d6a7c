"""The local-folder Store: whole writes by temp file + rename, conditional ones under flock.

Conditional writes (`replace`, `delete_if`) and every rename onto an existing key take an
exclusive flock on the key's *current* file and re-check that the path still names that inode
after the lock is granted; a writer that renamed a new file into place meanwhile has changed it,
so the waiter retries on the new one. That makes check-then-rename atomic without lock files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from mnistnn.core.files import TEMP_PREFIX, fsync_dir, unlink_quietly, write_temp
from mnistnn.core.lease import Lease, flock_lease
from mnistnn.core.locks import exclusive
from mnistnn.core.storage import Store, check_key
from mnistnn.errors import NotFound

_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


class LocalStore(Store):
    """A Store over a local folder, created on the first write."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()
        self.url = str(self.root)

    def join(self, key: str) -> str:
        return str(self._path(key))

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except _MISSING:
            raise NotFound(f"{path}: no such key") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            info = path.stat()
        except _MISSING:
            raise NotFound(f"{path}: no such key") from None
        if not stat.S_ISREG(info.st_mode):
            raise NotFound(f"{path}: no such key (a folder)")
        return info.st_size

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = write_temp(path, data)
        try:
            with _locked_current(path):  # serialised with replace/delete of the same file
                os.replace(tmp, path)
        finally:
            unlink_quietly(tmp)
        fsync_dir(path.parent)

    def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, prefix=True)
        folder = prefix.rpartition("/")[0]
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.root / folder):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else rel + "/"
            dirnames[:] = [
                name
                for name in dirnames
                if not name.startswith(TEMP_PREFIX)
                and (f"{base}{name}/".startswith(prefix) or prefix.startswith(f"{base}{name}/"))
            ]
            keys += [
                base + name
                for name in filenames
                if not name.startswith(TEMP_PREFIX) and (base + name).startswith(prefix)
            ]
        return sorted(keys)

    def list_info(self, prefix: str = "") -> dict[str, tuple[int, float]]:
        info = {}
        for key in self.list(prefix):
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                found = os.stat(self._path(key))
                info[key] = (found.st_size, found.st_mtime)
        return info

    def delete(self, key: str) -> None:
        path = self._path(key)
        with _locked_current(path) as fd:
            if fd is not None:
                os.unlink(path)
        fsync_dir(path.parent)

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self.read_bytes(key)
        except NotFound:
            return None
        return data, _token(data)

    def lease(
        self, key: str, owner: str, ttl: float = 60.0, timeout: float = 3600.0
    ) -> AbstractContextManager[Lease]:
        """An flock on the key's file: one machine, so it dies with its process and needs no ttl."""
        return flock_lease(self._path(key), owner, timeout)

    def create_versioned(self, key: str, data: bytes) -> str | None:
        path = self._path(key)
        tmp = write_temp(path, data)
        try:
            os.link(tmp, path)  # atomic, whole, and fails if the name exists
        except FileExistsError:
            return None
        finally:
            unlink_quietly(tmp)
        fsync_dir(path.parent)
        return _token(data)

    def replace_versioned(self, key: str, data: bytes, token: str) -> str | None:
        path = self._path(key)
        tmp = write_temp(path, data)  # the slow part, outside the lock
        try:
            with _locked_current(path) as fd:
                if fd is None or _token(_read_fd(fd)) != token:
                    return None
                os.replace(tmp, path)
        finally:
            unlink_quietly(tmp)
        fsync_dir(path.parent)
        return _token(data)

    def delete_if(self, key: str, token: str) -> bool:
        path = self._path(key)
        with _locked_current(path) as fd:
            if fd is None or _token(_read_fd(fd)) != token:
                return False
            os.unlink(path)
        fsync_dir(path.parent)
        return True

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))


def _token(data: bytes) -> str:
    """The version token of local bytes: their sha256, so it changes exactly when they do."""
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _locked_current(path: Path) -> Iterator[int | None]:
    """Yield an fd of the file now at `path`, exclusively flocked, or None if there is none."""
    with contextlib.ExitStack() as held:
        try:
            # no time-out: any holder keeps it for one rename only
            fd: int | None = held.enter_context(exclusive(path, timeout=None, create=False))
        except (FileNotFoundError, NotADirectoryError):
            fd = None
        yield fd


def _read_fd(fd: int) -> bytes:
    with open(fd, "rb", closefd=False) as handle:
        handle.seek(0)
        return handle.read()
