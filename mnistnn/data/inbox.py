"""The labelled inbox: MNIST CSV batches that other processes drop, each ingested once by content.

    data/incoming/*.csv, *.csv.gz       batches, never edited, moved or deleted by the pipeline
    data/snapshots/inbox.json           the ledger: every content (sha256) ever seen, and when
    data/snapshots/inbox.lock           the ledger's lock (`core.locks.exclusive`)

Which files are read (the stability rule): top-level files of the inbox whose name ends `.csv` or
`.csv.gz`; names starting with `.` or ending `.part` / `.tmp` are ignored, and so is a file whose
mtime is within `settle_seconds` (default 5) of now or that is still empty: it is being written
and waits for the next scan.

Each content is ingested once (the validated, content-addressed `ingest_csv`): the same bytes
under two names are one batch with both names; a file whose bytes change under the same name is a
new batch that `replaces` the earlier content of that name. A refused content (wrong column
count, a label out of range, more rejected rows than `max_rejected_fraction`) is recorded with
one line of reason and never retried until its bytes change.

The batches of a snapshot are those whose content is in the inbox now, in the order in which
their contents were first seen (ties, i.e. batches first seen in the same scan, by sha256).
Removing a file withdraws its batch from later snapshots; the ledger still remembers it, so
putting it back restores its place in the order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mnistnn.config import DataPaths
from mnistnn.core.files import sha256_file, write_json_atomic
from mnistnn.core.locks import exclusive
from mnistnn.data.ingest import check_fraction, ingest_csv
from mnistnn.errors import ConfigError, DataError, MnistnnError

log = logging.getLogger(__name__)

LEDGER_FILE = "inbox.json"
LEDGER_LOCK = "inbox.lock"
LEDGER_SCHEMA = 1
SUFFIXES = (".csv", ".csv.gz")
IGNORED_SUFFIXES = (".part", ".tmp")
DEFAULT_SETTLE_SECONDS = 5.0
LOCK_TIMEOUT = 600.0
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
        data = dataclasses.asdict(self)
        data["names"] = list(self.names)
        return data

    @property
    def order(self) -> tuple[str, str]:
        """The snapshot order: first seen, then sha256."""
        return (self.first_seen, self.sha256)


def ledger_path(paths: DataPaths) -> Path:
    """Where the inbox ledger lives."""
    return paths.local(paths.snapshots, "the labelled inbox") / LEDGER_FILE


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
) -> list[Batch]:
    """Ingest what is new in the inbox (once per content), record it in the ledger, return every
    batch whose content is in the inbox now (accepted and refused) in snapshot order.

    A missing inbox folder is an empty inbox. `now` (seconds since the epoch) makes the
    stability rule and `first_seen` deterministic in tests.
    """
    limit = check_fraction(max_rejected_fraction)
    settle = check_settle_seconds(settle_seconds)
    clock = time.time() if now is None else float(now)
    folder = Path(incoming)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: the inbox is not a folder")
    ready = stable_files(folder, settle, clock)
    if not ready and (paths.is_remote or not ledger_path(paths).exists()):
        return []  # an empty inbox writes nothing: a fresh clone stays as it was
    seen_at = _iso(clock)
    lock = paths.local(paths.snapshots, "the labelled inbox") / LEDGER_LOCK
    with exclusive(
        lock,
        timeout=LOCK_TIMEOUT,
        on_timeout=lambda waited: MnistnnError(
            f"{lock}: another scan of the inbox held the lock for "
            f"{waited:.0f} s"
        ),
    ):
        ledger = _read_ledger(ledger_path(paths))
        present: dict[str, list[str]] = {}  # sha256 -> names holding it now
        fresh: set[str] = set()
        changed = False
        contents = {name: sha256_file(path) for name, path in ready.items()}
        for name in sorted(ready, key=lambda n: (contents[n], n)):
            digest = contents[name]
            record = ledger["batches"].get(digest)
            if record is None:
                record = _ingest(ready[name], name, digest, paths, limit, seen_at)
                if record is None:  # the bytes changed while we read them: next scan
                    continue
                previous = ledger["names"].get(name)
                if previous is not None and previous != digest:
                    record["replaces"] = previous
                ledger["batches"][digest] = record
                fresh.add(digest)
            if name not in record["names"]:
                record["names"].append(name)
                changed = True
            if ledger["names"].get(name) != digest:
                ledger["names"][name] = digest
                changed = True
            present.setdefault(digest, []).append(name)
        if changed:
            write_json_atomic(ledger_path(paths), ledger)
    batches = [
        _batch(digest, ledger["batches"][digest], digest in fresh, paths.local(paths.processed, "the labelled inbox"))
        for digest in present
    ]
    return sorted(batches, key=lambda batch: batch.order)


def accepted(batches: list[Batch]) -> list[Batch]:
    """The accepted batches, in snapshot order."""
    return sorted((b for b in batches if b.status == ACCEPTED), key=lambda b: b.order)


def stable_files(folder: Path, settle_seconds: float, now: float) -> dict[str, Path]:
    """The inbox files that are ready to read, by name (the stability rule in the module doc)."""
    if not folder.is_dir():
        return {}
    ready = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.startswith(".") or name.endswith(IGNORED_SUFFIXES) or not name.endswith(SUFFIXES):
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed meanwhile
            continue
        if not path.is_file() or stat.st_size == 0:
            continue
        if now - stat.st_mtime < settle_seconds:
            log.info("%s: modified %.1f s ago, waits for the next scan", path, now - stat.st_mtime)
            continue
        ready[name] = path
    return ready


# -- internals ---------------------------------------------------------------------------------
def _ingest(
    path: Path, name: str, digest: str, paths: DataPaths, limit: float, seen_at: str
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
        summary = ingest_csv(path, paths.processed, max_rejected_fraction=limit)
    except DataError as exc:
        if sha256_file(path) != digest:
            return None
        reason = _one_line(str(exc)).replace(str(path), name)
        log.warning("refused %s: %s", name, reason)
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
        "accepted %s: %d rows, %d rejected", name, summary.rows_accepted, summary.rows_rejected
    )
    return {
        **record,
        "status": ACCEPTED,
        "reason": None,
        "accepted": summary.rows_accepted,
        "rejected": summary.rows_rejected,
        "parquet": Path(summary.parquet).name,
        "label_counts": summary.label_counts,
    }


def _batch(digest: str, record: dict[str, Any], new: bool, processed: Path) -> Batch:
    return Batch(
        file=record["file"],
        names=tuple(record["names"]),
        sha256=digest,
        status=record["status"],
        accepted=int(record["accepted"]),
        rejected=int(record["rejected"]),
        reason=record["reason"],
        first_seen=record["first_seen"],
        parquet=None if record["parquet"] is None else str(processed / record["parquet"]),
        new=new,
        replaces=record.get("replaces"),
    )


def _read_ledger(path: Path) -> dict[str, Any]:
    """The ledger, or an empty one; a corrupt ledger is an error (it decides what is new)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"schema": LEDGER_SCHEMA, "batches": {}, "names": {}}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DataError(f"{path}: the inbox ledger is not valid JSON ({exc})") from exc
    if (
        not isinstance(data, dict)
        or data.get("schema") != LEDGER_SCHEMA
        or not isinstance(data.get("batches"), dict)
        or not isinstance(data.get("names"), dict)
    ):
        raise DataError(f"{path}: not an inbox ledger of schema {LEDGER_SCHEMA}")
    return data


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:3]) if lines else "refused"


__all__ = ["Batch", "accepted", "ledger_path", "scan_inbox", "stable_files"]
