"""The inbox scan memo: each inbox file's sha256 remembered on this machine, so a rescan hashes
only what changed and a pass with nothing new reads no batch bytes and not even the ledger.

    $TMPDIR/mnistnn-cache/inbox-scan/<sha16 of the inbox location>.json

A local file is known by its identity `size:mtime_ns:inode` (from the one `stat` the stability
rule already makes); an object by the ETag its listing returns (no request per object). A file
whose identity is unchanged is not hashed again. The edge case: a local file rewritten in place
with the same size *and* the same mtime to the nanosecond (and the same inode) keeps its old
sha256; a writer that does that on purpose (`os.utime` back to the old time) must also touch
the file or delete this memo (it is only a cache: deleting it costs one full rehash).

`clean` records the ledger version (`ledger_token`) at which every name in it was known to the
ledger with its content: when the ledger still has that version and every ready file's identity
is one of those, nothing can be new, and the scan returns without reading the ledger.

The memo's first line is its mark: the local folder's identity (`inbox_folder.folder_identity`),
the ledger version, and when every entry was last checked, written after a scan in which every
batch-named entry was ready and recorded. While the folder and the ledger are as marked, a pass
with nothing new reads that one line and lists nothing: no `stat` per file, the same cost at any
history size. A file written in place (no entry created, removed or renamed) does not change
the folder, so the mark is trusted for `RECHECK_SECONDS` only: such a file is seen by the next
pass after that (every pass that lists the folder, and every scan without `only_new`, such as
the nightly run's, checks each file as before).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistnn.core import locations
from mnistnn.core.files import sha256_file
from mnistnn.core.storage import Store

MEMO_SCHEMA = 2
#: How long a mark spares a pass the `stat` of each file (a file written in place waits so long).
RECHECK_SECONDS = 600.0


@dataclass
class ScanMemo:
    """name -> (identity, sha256), and the names known clean at one ledger version."""

    path: Path
    files: dict[str, tuple[str, str]] = field(default_factory=dict)
    ledger_token: str | None = None
    clean: frozenset[str] = frozenset()
    changed: bool = False
    marked: bool = False  # the file on disk has a mark (a save without one clears it)

    @classmethod
    def load(cls, incoming: locations.Location) -> ScanMemo:
        """The memo of this inbox; an empty one when absent or unreadable (it is only a cache)."""
        memo = cls(memo_path(incoming))
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            header, _, body = memo.path.read_bytes().partition(b"\n")
            data, mark = json.loads(body), json.loads(header)
            if mark["schema"] == MEMO_SCHEMA:
                memo.marked = mark["folder"] is not None
                memo.files = {str(n): (str(i), str(s)) for n, (i, s) in data["files"].items()}
                memo.ledger_token = data["ledger_token"]
                memo.clean = frozenset(data["clean"])
        return memo

    def sha256(self, name: str, identity: str) -> str | None:
        """The remembered sha256 of `name` when its identity is unchanged."""
        known = self.files.get(name)
        return known[1] if known is not None and known[0] == identity else None

    def contents(self, incoming: locations.Location, identities: dict[str, str]) -> dict[str, str]:
        """Each ready file's sha256 (by name in `incoming`): remembered when its identity is
        unchanged, else read once (a file removed meanwhile is left out)."""
        contents = {}
        for name in identities:
            digest = self.sha256(name, identities[name])
            if digest is None:
                location = locations.join(incoming, name)  # only here: a Path costs ~2 us
                try:
                    digest, identity = _read_sha256(location)
                except FileNotFoundError:
                    continue
                if identity == identities[name] or isinstance(location, str):
                    self.remember(name, identity, digest)  # a file that changed: next scan
            contents[name] = digest
        return contents

    def remember(self, name: str, identity: str, sha256: str) -> None:
        if self.files.get(name) != (identity, sha256):
            self.files[name] = (identity, sha256)
            self.changed = True

    def is_clean(self, identities: dict[str, str], ledger_token: str | None) -> bool:
        """Whether nothing in `identities` (name -> identity) can be new at this ledger version."""
        return (
            ledger_token is not None
            and ledger_token == self.ledger_token
            and all(
                name in self.clean and self.sha256(name, identity) is not None
                for name, identity in identities.items()
            )
        )

    def mark_clean(self, names: set[str], ledger_token: str | None) -> None:
        if ledger_token != self.ledger_token or frozenset(names) != self.clean:
            self.ledger_token, self.clean, self.changed = ledger_token, frozenset(names), True

    def save(self, present: set[str], folder: str | None = None) -> None:
        """Write the memo (only the names still present), if anything changed, with its mark
        when `folder` (the folder's identity, read before listing it) is given; never fails."""
        gone = set(self.files) - present
        if not self.changed and not gone and folder is None and not self.marked:
            return
        mark = {"schema": MEMO_SCHEMA, "folder": folder, "ledger": self.ledger_token}
        data: dict[str, Any] = {
            "files": {name: list(self.files[name]) for name in sorted(present & set(self.files))},
            "ledger_token": self.ledger_token,
            "clean": sorted(self.clean & present),
        }
        text = f"{json.dumps({**mark, 'checked': time.time()})}\n{_compact(data)}\n"
        with contextlib.suppress(OSError):
            locations.write_bytes(self.path, text.encode())


def memo_path(incoming: locations.Location) -> Path:
    """Where the memo of this inbox lives on this machine."""
    where = str(incoming if isinstance(incoming, str) else Path(incoming).absolute())
    digest = hashlib.sha256(where.encode()).hexdigest()[:16]
    return locations.cache_dir() / "inbox-scan" / f"{digest}.json"


def read_mark(incoming: locations.Location, ledger: str | None) -> str | None:
    """The folder identity the memo's mark holds (its first line alone is read) while the
    ledger is as marked and every file was checked under `RECHECK_SECONDS` ago; else None."""
    try:
        with open(memo_path(incoming), "rb") as handle:
            mark = json.loads(handle.readline())
        age = time.time() - float(mark["checked"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    fresh = mark.get("schema") == MEMO_SCHEMA and 0 <= age < RECHECK_SECONDS
    folder = mark.get("folder")
    if ledger is None or not fresh or mark.get("ledger") != ledger or not isinstance(folder, str):
        return None
    return folder


def _compact(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def ledger_token(store: Store, key: str) -> str | None:
    """A cheap version of the ledger: a local file's `inode:mtime_ns:size` (every write is a
    rename, so a new inode), an object's ETag (one HEAD); None when there is no ledger yet."""
    local = store.local_path(key)
    try:
        if local is not None:
            info = os.stat(local)
            return f"{info.st_ino}:{info.st_mtime_ns}:{info.st_size}"
        return store.version(key)
    except FileNotFoundError:
        return None


def _read_sha256(location: locations.Location) -> tuple[str, str]:
    """(sha256, identity after reading): a local file streamed, an object streamed once with
    the ETag its bytes came with (so a memo never pairs an ETag with other bytes); a missing
    one is NotFound, a FileNotFoundError."""
    if isinstance(location, Path):
        digest = sha256_file(location)
        return digest, local_identity(location.stat())
    store, key = locations.split(location)
    hashing = hashlib.sha256()
    tag = store.read_into(key, hashing.update)  # one chunk in memory, whatever the object
    return hashing.hexdigest(), tag


def local_identity(info: os.stat_result) -> str:
    """What says a local file is unchanged: size, mtime in nanoseconds, inode."""
    return f"{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"


__all__ = ["MEMO_SCHEMA", "RECHECK_SECONDS", "ScanMemo", "ledger_token", "local_identity"]
__all__ += ["memo_path", "read_mark"]
