"""What an inbox holds that is ready to read (the stability rule of `mnistnn.data.inbox`), each
entry's identity for the scan memo, and the inbox's own identity for the memo's mark.

A local folder's identity is `dev:ino:mtime_ns` of the folder itself: its mtime changes when an
entry is created, removed or renamed in it (not when a file in it is written in place). As git
does with racy timestamps, a folder modified within `RACY_SECONDS` of the moment it is read is
not trusted (an entry added in the same clock tick would leave its mtime as it was); the folder
is read *before* it is listed, so an entry added during the listing changes what was recorded.

An `s3://` inbox has no folder mtime. Its identity is `after:<key>`, the newest batch name of a
complete listing (S3 lists keys in order): it holds while one request for the keys that sort
after it (`Store.list_after`) finds no batch name. An object whose key sorts *before* it (names
that do not grow, such as random ones) is not seen by that request: it waits for the mark's
recheck, for a name that sorts later, or for a scan without `only_new`.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from mnistnn.core import locations
from mnistnn.core.locations import Location
from mnistnn.data.inbox_memo import local_identity
from mnistnn.data.text import file_kind
from mnistnn.errors import DataError
from mnistnn.inert import shown

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".csv.gz")
IGNORED_SUFFIXES = (".part", ".tmp")
#: A folder mtime this close to the moment it is read (or later) is not trusted.
RACY_SECONDS = 2.0


def folder_identity(folder: Location) -> str | None:
    """`dev:ino:mtime_ns` of a local inbox folder, read before it is listed; None for an
    `s3://` inbox, a missing folder, or a folder modified too recently to trust."""
    if not isinstance(folder, Path):
        return None
    try:
        info = os.stat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or time.time_ns() - info.st_mtime_ns < RACY_SECONDS * 1e9:
        return None
    return f"{info.st_dev}:{info.st_ino}:{info.st_mtime_ns}"


def newest_identity(names: Iterable[str]) -> str | None:
    """An `s3://` inbox's identity for the mark: `after:` and its newest batch name."""
    newest = max(names, default=None)
    return None if newest is None else f"after:{newest}"


def unchanged_since(folder: str, marked: str | None) -> str | None:
    """`marked` (an `s3://` inbox's `newest_identity`) when no batch-named top-level object sorts
    after its name (one listing request, a page at most), else None."""
    if marked is None or not marked.startswith("after:"):
        return None
    keys, more = locations.store_at(folder).list_after("", marked.removeprefix("after:"))
    if more or any("/" not in key and is_batch_name(key) for key in keys):
        return None
    return marked


def ready_entries(
    incoming: str | os.PathLike[str], settle_seconds: float, now: float
) -> tuple[dict[str, Location], dict[str, str]]:
    """The entries ready to read by name, and each one's identity (`ready_identities`)."""
    identities = ready_identities(incoming, settle_seconds, now)
    return {name: locations.join(incoming, name) for name in identities}, identities


def ready_identities(
    incoming: str | os.PathLike[str], settle_seconds: float, now: float
) -> dict[str, str]:
    """The names ready to read (a local folder's stable files; an `s3://` inbox's top-level
    objects, whole once written) and each one's identity for the scan memo."""
    return scan_entries(incoming, settle_seconds, now)[0]


def scan_entries(
    incoming: str | os.PathLike[str], settle_seconds: float, now: float
) -> tuple[dict[str, str], bool]:
    """`ready_identities`, and whether every batch-named entry was ready (none waiting, empty
    or refused as not a regular file)."""
    folder = locations.as_location(incoming)
    if isinstance(folder, Path):
        if folder.exists() and not folder.is_dir():
            raise DataError(f"{folder}: the inbox is not a folder")
        return _stable_identities(folder, settle_seconds, now)
    tags = locations.store_at(folder).list_tags("")
    ready = {name: tag for name, tag in tags.items() if "/" not in name and is_batch_name(name)}
    return ready, True


def stable_files(folder: Path, settle_seconds: float, now: float) -> dict[str, Path]:
    """The local inbox files that are ready to read, by name (the stability rule)."""
    return {name: folder / name for name in _stable_identities(folder, settle_seconds, now)[0]}


def is_batch_name(name: str) -> bool:
    return (
        not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES) and name.endswith(SUFFIXES)
    )


def _stable_identities(
    folder: Path, settle_seconds: float, now: float
) -> tuple[dict[str, str], bool]:
    """name -> identity of each stable file, and whether every batch-named entry was: one
    `stat` per entry and no Path objects."""
    if not folder.is_dir():
        return {}, True
    identities, complete = {}, True
    with os.scandir(folder) as entries:
        found = sorted((entry.name, entry) for entry in entries if is_batch_name(entry.name))
    for name, entry in found:
        try:
            info = entry.stat(follow_symlinks=False)  # a link is never followed out of the inbox
        except FileNotFoundError:  # removed meanwhile
            complete = False
            continue
        if not stat.S_ISREG(info.st_mode):
            log.warning(
                "refused %s: %s, not a regular file (never read)",
                shown(name),
                file_kind(info.st_mode),
            )
            complete = False
        elif info.st_size == 0:
            complete = False
        elif now - info.st_mtime < settle_seconds:
            log.info(
                "%s: modified %.1f s ago, waits for the next scan",
                shown(entry.path),
                now - info.st_mtime,
            )
            complete = False
        else:
            identities[name] = local_identity(info)
    return identities, complete


__all__ = [
    "IGNORED_SUFFIXES",
    "RACY_SECONDS",
    "SUFFIXES",
    "folder_identity",
    "is_batch_name",
    "newest_identity",
    "ready_entries",
    "ready_identities",
    "scan_entries",
    "stable_files",
    "unchanged_since",
]
