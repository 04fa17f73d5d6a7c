"""Locations: a local path or an `s3://bucket/key` URL, read and written through a `Store`.

The run folders, checkpoints and the registry name their files by *location*: a `Path` for a
local folder (so every local layout, message and test stays as it was) or a URL string on object
storage. These helpers join locations and do whole-object I/O on them (an input object is
streamed into the per-machine cache instead, `download`); a location's store is the one of its
parent folder (`open_store(parent)` + the last name as the key). S3 stores are
cached per (URL, endpoint, credentials), so a run reuses one client and its connections.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mnistnn.core.files import atomic_write, sha256_file, temp_beside, unlink_quietly
from mnistnn.core.storage import URL_SCHEME, Store, open_store

#: A local path or a URL (`s3://bucket/prefix/key`).
Location = Path | str

_HEX64 = re.compile(r"[0-9a-f]{64}")
_STORES: dict[tuple[str, ...], Store] = {}
_STORES_LOCK = threading.Lock()
_MAX_STORES = 64


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether `location` is a URL (object storage) rather than a local path."""
    return isinstance(location, str) and URL_SCHEME.match(location) is not None


def as_location(location: str | os.PathLike[str]) -> Location:
    """A URL string as it is, anything else as a Path (never `Path("s3://...")`)."""
    if is_url(location):
        assert isinstance(location, str)
        return location.rstrip("/")
    return Path(location)


def join(location: str | os.PathLike[str], *parts: str) -> Location:
    """`location / part / ...` for paths and URLs alike."""
    base = as_location(location)
    if isinstance(base, Path):
        return base.joinpath(*parts)
    return "/".join([base, *(part.strip("/") for part in parts)])


def name(location: str | os.PathLike[str]) -> str:
    """The last component of a location."""
    if isinstance(location, str) and not location.endswith(("/", "/.")) and location != ".":
        return location.rpartition("/")[2]  # what Path(location).name is, without a Path
    base = as_location(location)
    return base.name if isinstance(base, Path) else base.rpartition("/")[2]


def parent(location: str | os.PathLike[str]) -> Location:
    """The folder (prefix) holding a location."""
    base = as_location(location)
    return base.parent if isinstance(base, Path) else base.rpartition("/")[0]


def store_at(folder: str | os.PathLike[str]) -> Store:
    """The store rooted at `folder` (cached for URLs; a local store costs nothing to make)."""
    base = as_location(folder)
    if isinstance(base, Path):
        return open_store(base)
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    key = (
        base,
        os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "",
        os.environ.get("AWS_ACCESS_KEY_ID", ""),
        hashlib.sha256(secret.encode()).hexdigest(),  # never the secret itself
    )
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            if len(_STORES) >= _MAX_STORES:
                _STORES.clear()
            store = _STORES[key] = open_store(base)
    return store


def split(location: str | os.PathLike[str]) -> tuple[Store, str]:
    """(the store of the location's folder, the key of the location in it)."""
    return store_at(parent(location)), name(location)


def read_bytes(location: str | os.PathLike[str]) -> bytes:
    """The bytes at `location`; NotFound (a FileNotFoundError) when absent."""
    store, key = split(location)
    return store.read_bytes(key)


def write_bytes(location: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` at `location`, whole or not at all."""
    store, key = split(location)
    store.write_bytes(key, data)


def write_json(location: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON at `location`, whole or not at all (the text
    `files.write_json_atomic` writes locally)."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_bytes(location, text.encode("utf-8"))


def exists(location: str | os.PathLike[str]) -> bool:
    store, key = split(location)
    return store.exists(key)


def delete(location: str | os.PathLike[str]) -> None:
    """Delete `location`; a missing one is fine."""
    store, key = split(location)
    store.delete(key)


def names_in(folder: str | os.PathLike[str]) -> list[str]:
    """The names of the objects directly in `folder` (not in its sub-folders), sorted."""
    return [key for key in store_at(folder).list("") if "/" not in key]


def cache_dir() -> Path:
    """Where inputs downloaded from URLs and outputs staged for upload live (per machine, safe
    to delete)."""
    return Path(tempfile.gettempdir()) / "mnistnn-cache"


def local_copy(location: str | os.PathLike[str]) -> Path:
    """A local file with the bytes at `location`: a path is itself; a URL is streamed into
    `cache_dir()/src-<sha16>/<name>` (`download`), named by content so a copy is never stale and
    the file name (and its suffix) stays what readers expect."""
    base = as_location(location)
    if isinstance(base, Path):
        return base
    return download(base)[0]


def download(url: str) -> tuple[Path, str]:
    """(local copy, sha256) of the object at `url`, streamed into the cache a chunk at a time
    and hashed on the way, so memory is one chunk, not the object (`Store.read_into`); the
    sha256 is remembered under the URL and the ETag the download returned (`sha256_of`)."""
    store, key = split(url)
    digest = hashlib.sha256()

    def write(chunk: bytes) -> None:
        digest.update(chunk)
        handle.write(chunk)

    with temp_beside(cache_dir() / "staging" / name(url)) as (handle, tmp):
        tag = store.read_into(key, write)
    hexdigest = digest.hexdigest()
    target = cache_dir() / f"src-{hexdigest[:16]}" / name(url)
    try:
        if not target.is_file():  # a copy already there has the same bytes
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)  # whole or absent, as every cache entry
    finally:
        unlink_quietly(tmp)
    with contextlib.suppress(OSError):  # only a memo: a full cache disk costs a download later
        write_bytes(_sha256_memo(url, tag), hexdigest.encode("ascii"))
    return target, hexdigest


@contextlib.contextmanager
def atomic_output(location: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """A file to stream into that appears at `location` whole, on success only: a path is
    written beside itself and renamed; for a URL the file is staged in `cache_dir()` and
    uploaded as one object when the block ends."""
    base = as_location(location)
    if isinstance(base, Path):
        with atomic_write(base, mode) as handle:
            yield handle
        return
    # staged under a name of its own: two uploads of one name never share a temp file
    with temp_beside(cache_dir() / "staging" / name(base), mode) as (handle, tmp):
        yield handle
    try:
        write_bytes(base, Path(tmp).read_bytes())
    finally:
        unlink_quietly(tmp)


def list_folder(folder: str | os.PathLike[str]) -> list[str]:
    """Every key under `folder` ("a.csv", "sub/b.png"), sorted; a missing folder is empty."""
    return store_at(folder).list("")


def sha256_of(location: str | os.PathLike[str]) -> str:
    """Hex sha256 of a local file (streamed) or of an object's bytes.

    An object's is remembered on this machine under its URL and ETag (`cache_dir()/sha256/`),
    so asking again about an unchanged object (a rescan of an S3 inbox, the no-server answer's
    data identity) costs a HEAD, not a download. Every write of a key gives it a new ETag, and
    the ETag remembered is the one the download itself returned, so a memo is never stale.
    """
    base = as_location(location)
    if isinstance(base, Path):
        return sha256_file(base)
    store, key = split(base)
    memo = _sha256_memo(base, store.version(key))
    with contextlib.suppress(OSError):
        remembered = memo.read_text("ascii")
        if _HEX64.fullmatch(remembered):
            return remembered
    return download(base)[1]  # streamed, and its copy kept in the cache for the reader


def _sha256_memo(url: str, tag: str) -> Path:
    return cache_dir() / "sha256" / hashlib.sha256(f"{url}\n{tag}".encode()).hexdigest()
