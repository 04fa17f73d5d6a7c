"""The labelled inbox: MNIST CSV batches that other processes drop, each ingested once by content.

    data/incoming/*.csv, *.csv.gz       batches, never edited, moved or deleted by the pipeline
    data/snapshots/inbox.json           the ledger: every content (sha256) ever seen, and when

The inbox and the data folder are each a local folder or an `s3://` prefix, in any combination
(`--incoming s3://b/in --data-dir /data`, or the other way round); every read and write goes
through the storage layer (`mnistnn.core.locations`).

Which files are read (the stability rule): top-level entries of the inbox whose name ends `.csv`
or `.csv.gz`; names starting with `.` or ending `.part` / `.tmp` are ignored. Only regular files
really in the folder: a symbolic link (even to a file inside), a FIFO, a device or a socket is
refused with one logged line and never opened. In a local folder,
a file whose mtime is within `settle_seconds` (default 5) of now, or that is still empty, is being
written and waits for the next scan. An object is whole from the moment its PUT succeeds (S3 has
no partial objects), so an object is ready at once, whatever `settle_seconds` says; an empty
object is a content like any other (and refused).

Each content is ingested once (the validated, content-addressed ingest, `ingest_location`): the
same bytes under two names are one batch with both names; a file whose bytes change under the
same name is a new batch that `replaces` the earlier content of that name. A refused content
(wrong column count, a label out of range, more rejected rows than `max_rejected_fraction`) is
recorded with one line of reason and never retried until its bytes change.

The ledger is updated by compare-and-swap (`Store.update`: a conditional PUT with `If-Match` on
S3, a flock-guarded check-and-rename on a local disk), so scans on several machines (or
processes) never lose each other's records: each scan ingests what the ledger did not hold when
it looked (ingests are idempotent and content-addressed, so a race costs only repeated work),
then merges its records in; a content two scans found at once keeps the record that won, and
only the scan whose record won reports the batch as `new`.

The batches of a snapshot are those whose content is in the inbox now, in the order in which
their contents were first seen (ties, i.e. batches first seen in the same scan, by sha256).
Removing a file withdraws its batch from later snapshots; the ledger still remembers it, so
putting it back restores its place in the order. A rescan hashes only the files whose identity
changed and, with nothing new, reads neither batch bytes nor the ledger; in a local folder
unchanged since the last pass it lists nothing either (`inbox_memo`, `inbox_folder`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mnistnn.config import DataPaths
from mnistnn.core import locations
from mnistnn.core.locations import Location
from mnistnn.data.inbox_folder import (
    IGNORED_SUFFIXES,
    SUFFIXES,
    folder_identity,
    newest_identity,
    ready_entries,
    ready_identities,
    scan_entries,
    stable_files,
    unchanged_since,
)
from mnistnn.data.inbox_ledger import Merger, parse_ledger, recorded
from mnistnn.data.inbox_memo import ScanMemo, ledger_token, read_mark
from mnistnn.data.ingest import check_fraction
from mnistnn.data.remote import ingest_location
from mnistnn.errors import ConfigError, DataError
from mnistnn.inert import shown

log = logging.getLogger(__name__)

LEDGER_FILE = "inbox.json"
DEFAULT_SETTLE_SECONDS = 5.0
ACCEPTED = "accepted"
REFUSED = "refused"


@dataclass(frozen=True)
class Batch:
    """One content of the inbox, as the ledger records it."""

    file: str  # the inbox name it was first seen under (relative to the inbox)
    names: tuple[str, ...]  # every inbox name seen with these bytes, first seen first
    sha256: str
    status: str  # "accepted" | "refused"
    accepted: int
    rejected: int
    reason: str | None  # one line, for refused batches
    first_seen: str  # ISO time (UTC, microseconds)
    parquet: str | None  # accepted batches only
    new: bool  # first seen (ingested or refused) in this call
    replaces: str | None = None  # the earlier sha256 of the same name, when the file changed

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (names as a list)."""
        data = dict(vars(self))  # the fields, in order, all plain values
        data["names"] = list(self.names)
        return data

    @property
    def order(self) -> tuple[str, str]:
        """The snapshot order: first seen, then sha256."""
        return (self.first_seen, self.sha256)


def ledger_path(paths: DataPaths) -> Location:
    """Where the inbox ledger lives (a path, or a URL on object storage)."""
    return locations.join(paths.snapshots, LEDGER_FILE)


def check_settle_seconds(value: object) -> float:
    """`settle_seconds` must be a finite number >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value >= 0
        or value == float("inf")
    ):
        raise ConfigError(f"settle_seconds must be a finite number >= 0, got {value!r}")
    return float(value)


def scan_inbox(
    incoming: str | os.PathLike[str],
    paths: DataPaths,
    *,
    max_rejected_fraction: float = 0.0,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    now: float | None = None,
    only_new: bool = False,
) -> list[Batch]:
    """Ingest what is new in the inbox (once per content), record it in the ledger, return every
    batch whose content is in the inbox now (accepted and refused) in snapshot order; with
    `only_new`, only the batches first seen by this call (a pass with nothing new then reads
    neither batch bytes nor the ledger, see `inbox_memo`).

    A missing inbox folder (or an empty prefix) is an empty inbox. `now` (seconds since the
    epoch) makes the stability rule and `first_seen` deterministic in tests.
    """
    limit = check_fraction(max_rejected_fraction)
    settle = check_settle_seconds(settle_seconds)
    clock = time.time() if now is None else float(now)
    where = locations.as_location(incoming)
    store, key = locations.split(ledger_path(paths))
    token = ledger_token(store, key)
    folder = folder_identity(where)  # before the listing: an entry added meanwhile changes it
    if only_new and _as_marked(where, folder, token):
        return []  # the folder and the ledger as marked: nothing listed, nothing read
    identities, complete = scan_entries(incoming, settle, clock)
    if not identities and token is None:
        return []  # an empty inbox writes nothing: a fresh clone stays as it was
    if isinstance(where, str):
        folder = newest_identity(identities)  # from the listing: a key after it is new
    mark = folder if complete else None
    memo = ScanMemo.load(where)
    if only_new and memo.is_clean(identities, token):
        memo.save(set(identities), mark)
        return []
    stored = store.read_versioned(key)
    known = parse_ledger(store.join(key), stored)
    contents = memo.contents(where, identities)
    found = _ingest_new(where, contents, known, paths, limit, _iso(clock))
    present = {
        name: digest
        for name, digest in contents.items()
        if digest in known["batches"] or digest in found
    }
    won: set[str] = set()  # the contents whose record this scan put in (reset per attempt)
    if present and (found or not recorded(known, present)):
        merge = Merger(store.join(key), present, found, won, (stored, known))
        store.update(key, merge)
        ledger = merge.ledger
        token = ledger_token(store, key)
    else:
        ledger = known  # everything present is recorded as it is: nothing to write
    memo.mark_clean(set(present), token)
    memo.save(set(identities), mark if memo.is_clean(identities, token) else None)
    return _batches(ledger, present, won, paths, only_new)


def accepted(batches: list[Batch]) -> list[Batch]:
    """The accepted batches, in snapshot order."""
    return sorted((b for b in batches if b.status == ACCEPTED), key=lambda b: b.order)


# -- internals ---------------------------------------------------------------------------------
def _as_marked(where: Location, folder: str | None, token: str | None) -> bool:
    """Whether the memo's mark (read once) says nothing can be new: a local folder's identity
    `folder` as marked, or on S3 no batch name sorting after the marked newest one (one
    request)."""
    marked = read_mark(where, token)
    if isinstance(where, str):
        return unchanged_since(where, marked) is not None
    return folder is not None and marked == folder


def _ingest_new(
    incoming: Location,
    contents: dict[str, str],
    known: dict[str, Any],
    paths: DataPaths,
    limit: float,
    seen_at: str,
) -> dict[str, dict[str, Any]]:
    """Ingest each content the ledger does not hold yet, once; its record by sha256."""
    found: dict[str, dict[str, Any]] = {}
    for name in sorted(contents, key=lambda n: (contents[n], n)):
        digest = contents[name]
        if digest in known["batches"] or digest in found:
            continue
        record = _ingest(locations.join(incoming, name), name, digest, paths, limit, seen_at)
        if record is not None:  # None: the bytes changed while we read them: next scan
            found[digest] = record
    return found


def _ingest(
    location: Location, name: str, digest: str, paths: DataPaths, limit: float, seen_at: str
) -> dict[str, Any] | None:
    """Ingest one new content; a ledger record (accepted or refused), or None if it changed."""
    record: dict[str, Any] = {
        "sha256": digest,
        "file": name,
        "names": [],
        "first_seen": seen_at,
        "replaces": None,
    }
    try:
        summary = ingest_location(location, paths.processed, max_rejected_fraction=limit)
    except (DataError, MemoryError, RecursionError) as exc:  # this batch's failure, not the scan's
        if locations.sha256_of(location) != digest:
            return None
        reason = _one_line(str(exc) or type(exc).__name__)
        reason = reason.replace(shown(location), shown(name)).replace(str(location), shown(name))
        log.warning("refused %s: %s", shown(name), reason)
        return {
            **record,
            "status": REFUSED,
            "reason": reason,
            "accepted": 0,
            "rejected": 0,
            "parquet": None,
        }
    if summary.sha256 != digest:
        return None
    log.info(
        "accepted %s: %d rows, %d rejected",
        shown(name),
        summary.rows_accepted,
        summary.rows_rejected,
    )
    return {
        **record,
        "status": ACCEPTED,
        "reason": None,
        "accepted": summary.rows_accepted,
        "rejected": summary.rows_rejected,
        "parquet": locations.name(summary.parquet),
        "label_counts": summary.label_counts,
    }


def _batches(
    ledger: dict[str, Any], present: dict[str, str], won: set[str], paths: DataPaths, only_new: bool
) -> list[Batch]:
    """The present contents as batches in snapshot order (only those this scan won: `only_new`)."""
    processed = str(locations.join(paths.processed, "x"))[:-1]  # + a file name: its location
    batches = [
        _batch(digest, ledger["batches"][digest], digest in won, processed)
        for digest in dict.fromkeys(present[name] for name in sorted(present))
        if digest in won or not only_new
    ]
    return sorted(batches, key=lambda batch: batch.order)


def _batch(digest: str, record: dict[str, Any], new: bool, processed: str) -> Batch:
    parquet = record["parquet"]
    return Batch(
        file=record["file"],
        names=tuple(record["names"]),
        sha256=digest,
        status=record["status"],
        accepted=int(record["accepted"]),
        rejected=int(record["rejected"]),
        reason=record["reason"],
        first_seen=record["first_seen"],
        parquet=None if parquet is None else processed + parquet,
        new=new,
        replaces=record.get("replaces"),
    )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:3]) if lines else "refused"


__all__ = [
    "IGNORED_SUFFIXES",
    "SUFFIXES",
    "Batch",
    "accepted",
    "ledger_path",
    "ready_entries",
    "ready_identities",
    "scan_inbox",
    "stable_files",
]
