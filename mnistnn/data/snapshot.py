"""Snapshots: the training data of a run, the base file plus every accepted inbox batch so far.

A snapshot is a small content-addressed manifest, `<snapshots>/<sha16>.json`, holding the
canonical JSON of

    {"schema": 1, "split": "rowhash-v1", "recent_fraction": 0.1,
     "members": [{"role": "base", "sha256": ..., "rows": 60000, "train_rows": 60000,
                  "recent_rows": 0, "parquet": "<sha16>.parquet"},
                 {"role": "batch", "sha256": ..., "rows": 3000, "train_rows": 2702, ...}, ...]}

Its sha256 is the snapshot's identity (the run key uses it); the members are in snapshot order:
the base first, then the batches in the order in which they were first seen (ties by sha256).
File names are not part of it, so renaming a batch retrains nothing. A snapshot without batches
*is* the base file: no manifest, and its identity is the base file's sha256, exactly as before
the inbox existed.

Manifests and the recent-rows Parquet are content-addressed, written once as whole objects and
read back through the storage layer, so `<snapshots>` and `<processed>` may be `s3://` prefixes
(a URL member is read through the per-machine download cache, `locations.local_copy`).

Recent test data: of each batch (never of the base), the rows `mnistnn.data.split` holds out
by the hash of their own bytes are kept out of training.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistnn.config import INPUT_NODES, SCHEMA_VERSION, DataPaths
from mnistnn.core import locations
from mnistnn.core.files import sha256_bytes
from mnistnn.data.parquet import read_parquet, write_rows
from mnistnn.data.split import (
    DEFAULT_RECENT_FRACTION,
    SPLIT_RULE,
    check_recent_fraction,
    recent_mask,
)
from mnistnn.data.split_memo import split_counts
from mnistnn.errors import DataError, StorageUnavailable
from mnistnn.types import LabelArray, PixelArray

SNAPSHOT_SCHEMA = 1


@dataclass(frozen=True)
class Member:
    """One file of a snapshot: the base training file or an accepted batch."""

    role: str  # "base" | "batch"
    sha256: str
    rows: int
    train_rows: int
    recent_rows: int
    parquet: str  # file name in the processed folder

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))  # the fields, in order (asdict copies deeply: 50 us a member)


@dataclass(frozen=True)
class Snapshot:
    """A run's training data: its identity, the manifest (None: the base file alone), members."""

    sha256: str
    manifest: str | None
    members: tuple[Member, ...]
    recent_fraction: float
    processed: str

    @property
    def base(self) -> Member:
        return self.members[0]

    @property
    def batches(self) -> tuple[Member, ...]:
        return self.members[1:]

    @property
    def train_data(self) -> str:
        """What training reads: the manifest, or the base Parquet file when there is no batch."""
        if self.manifest is not None:
            return self.manifest
        return str(locations.join(self.processed, self.base.parquet))

    @property
    def train_rows(self) -> int:
        return sum(member.train_rows for member in self.members)

    @property
    def recent_rows(self) -> int:
        return sum(member.recent_rows for member in self.members)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "manifest": self.manifest,
            "members": [member.to_dict() for member in self.members],
            "recent_fraction": self.recent_fraction,
            "processed": self.processed,
        }


def build_snapshot(
    base_sha256: str,
    base_rows: int,
    base_parquet: str | os.PathLike[str],
    batches: list[tuple[str, str | os.PathLike[str]]],
    paths: DataPaths,
    *,
    recent_fraction: float = DEFAULT_RECENT_FRACTION,
) -> Snapshot:
    """The snapshot of the base file plus `batches` ((sha256, parquet) in snapshot order).

    Writes the manifest when there is at least one batch (once: it is content-addressed).
    """
    fraction = check_recent_fraction(recent_fraction)
    processed = locations.parent(base_parquet)
    base = Member(
        "base", base_sha256, int(base_rows), int(base_rows), 0, locations.name(base_parquet)
    )
    members = [base]

    def count(index: int) -> tuple[int, int]:
        pixels, labels = _cached_read(_cache_key(batches[index][1]))
        return len(labels), int(np.count_nonzero(recent_mask(pixels, labels, fraction)))

    wanted = [(sha, fraction) for sha, _ in batches]
    counts = split_counts(wanted, count, str(processed))  # only new batches are read
    for (sha, parquet), (rows, recent) in zip(batches, counts, strict=True):
        members.append(Member("batch", sha, rows, rows - recent, recent, locations.name(parquet)))
    if len(members) == 1:
        return Snapshot(base_sha256, None, (base,), fraction, str(processed))
    text = canonical_manifest(members, fraction)
    digest = sha256_bytes(text)
    location = locations.join(paths.snapshots, f"{digest[:16]}.json")
    if not _holds(location, text):
        locations.write_bytes(location, text)
    return Snapshot(digest, str(location), tuple(members), fraction, str(processed))


def canonical_manifest(members: list[Member], recent_fraction: float) -> bytes:
    """The manifest's bytes: canonical JSON (sorted keys, no blanks), hashed as they are."""
    document = {
        "schema": SNAPSHOT_SCHEMA,
        "split": SPLIT_RULE,
        "recent_fraction": recent_fraction,
        "members": [member.to_dict() for member in members],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def read_manifest(path: str | os.PathLike[str]) -> Snapshot:
    """A manifest file as a Snapshot; DataError when it is not one or its hash does not match."""
    source = locations.as_location(path)
    try:
        text = locations.read_bytes(source)
        document = json.loads(text)
    except FileNotFoundError:  # NotFound too
        raise DataError(f"{source}: no such snapshot manifest") from None
    except StorageUnavailable:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"{source}: not a readable snapshot manifest ({exc})") from exc
    digest = sha256_bytes(text)
    if not locations.name(source).startswith(digest[:16]):
        raise DataError(f"{source}: content does not match its name (sha256 {digest[:16]})")
    try:
        if document["schema"] != SNAPSHOT_SCHEMA or document["split"] != SPLIT_RULE:
            raise DataError(f"{source}: snapshot schema {document['schema']} is not supported")
        members = tuple(Member(**member) for member in document["members"])
        fraction = float(document["recent_fraction"])
    except (KeyError, TypeError) as exc:
        raise DataError(f"{source}: not a snapshot manifest ({exc})") from exc
    processed = DataPaths.at(locations.parent(locations.parent(source))).processed
    return Snapshot(digest, str(source), members, fraction, str(processed))


def load_snapshot(manifest: str | os.PathLike[str]) -> tuple[PixelArray, LabelArray]:
    """The training rows of a snapshot: the base's, then each batch's non-recent rows, in order.

    One contiguous (n, 784) uint8 array and its labels, read-only and cached per process (the
    key includes a local manifest's size and mtime, like `load_arrays`; a URL's name is its
    content's hash, which `read_manifest` checks).
    """
    return _load_cached(*_manifest_key(manifest), False)


def load_recent(manifest: str | os.PathLike[str]) -> tuple[PixelArray, LabelArray]:
    """The recent test rows of a snapshot (each batch's held-out slice, in snapshot order)."""
    return _load_cached(*_manifest_key(manifest), True)


def write_recent_parquet(snapshot: Snapshot) -> tuple[str, str, int] | None:
    """Write the recent test rows as an ingest-layout Parquet file, content-addressed.

    Returns (path, sha256 of the rows, rows), or None when the snapshot holds no recent rows.
    The sha256 is of the rows' bytes (labels, then pixels), so the same rows are the same
    test data wherever they came from.
    """
    if snapshot.manifest is None or snapshot.recent_rows == 0:
        return None
    pixels, labels = load_recent(snapshot.manifest)
    digest = hashlib.sha256(labels.tobytes() + pixels.tobytes()).hexdigest()
    location = locations.join(snapshot.processed, f"{digest[:16]}.recent.parquet")
    if not locations.exists(location):
        metadata = {
            "mnistnn.source_name": f"recent test rows of snapshot {snapshot.sha256[:16]}",
            "mnistnn.source_sha256": digest,
            "mnistnn.rows_accepted": str(len(labels)),
            "mnistnn.schema_version": str(SCHEMA_VERSION),
        }
        write_rows(location, pixels, labels, metadata)
    return str(location), digest, len(labels)


# -- internals ---------------------------------------------------------------------------------
def _cache_key(location: str | os.PathLike[str]) -> str:
    """A local path resolved (one entry per file), a URL as it is."""
    return str(location) if locations.is_url(location) else str(Path(location).resolve())


def _manifest_key(manifest: str | os.PathLike[str]) -> tuple[str, int, int]:
    if locations.is_url(manifest):
        return str(manifest), 0, 0  # content-addressed: the name pins the bytes
    stat = Path(manifest).stat()
    return str(Path(manifest).resolve()), stat.st_size, stat.st_mtime_ns


def _holds(location: locations.Location, data: bytes) -> bool:
    """Whether `location` already holds exactly `data`."""
    try:
        return locations.read_bytes(location) == data
    except FileNotFoundError:
        return False


@functools.lru_cache(maxsize=2)
def _load_cached(
    manifest: str, size: int, mtime_ns: int, recent: bool
) -> tuple[PixelArray, LabelArray]:
    snapshot = read_manifest(manifest)
    processed = snapshot.processed
    wanted = [m.recent_rows if recent else m.train_rows for m in snapshot.members]
    pixels = np.empty((sum(wanted), INPUT_NODES), dtype=np.uint8)
    labels = np.empty(sum(wanted), dtype=np.uint8)
    row = 0
    for member, count in zip(snapshot.members, wanted, strict=True):
        if count == 0:
            continue
        where = locations.join(processed, member.parquet)
        part_pixels, part_labels = read_parquet(where)
        if len(part_labels) != member.rows:
            raise DataError(
                f"{where}: {len(part_labels)} rows, the snapshot "
                f"{locations.name(manifest)} says {member.rows}; ingest the batch again"
            )
        if member.role == "batch":
            mask = recent_mask(part_pixels, part_labels, snapshot.recent_fraction)
            keep = mask if recent else ~mask
            part_pixels, part_labels = part_pixels[keep], part_labels[keep]
        if len(part_labels) != count:
            raise DataError(
                f"{manifest}: member {member.sha256[:16]} splits into other rows than recorded"
            )
        pixels[row : row + count] = part_pixels
        labels[row : row + count] = part_labels
        row += count
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


@functools.lru_cache(maxsize=64)
def _cached_read(path: str) -> tuple[PixelArray, LabelArray]:
    """Batch Parquet files are content-addressed and small: read each once per process."""
    pixels, labels = read_parquet(path)
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


__all__ = [
    "Member",
    "Snapshot",
    "build_snapshot",
    "load_recent",
    "load_snapshot",
    "read_manifest",
    "write_recent_parquet",
]
