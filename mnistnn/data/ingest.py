"""Ingest an untrusted MNIST CSV into a content-addressed store: Parquet, rejects, summary.

Why: training must neither learn from malformed rows nor lose them silently. Each source maps to
`<processed>/<first 16 hex of its sha256>.parquet`, `<hash>.rejects.csv` when rows were refused,
and `<hash>.json` (the summary, written last: its presence means the conversion finished). An
unchanged source is therefore recognised by its hash alone and never converted twice. How the
text is checked and parsed lives in `text`, `rules` and `parse`; the file layout in `parquet`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mnistnn.config import N_CLASSES
from mnistnn.core.files import clean_temp_files, write_bytes_atomic, write_json_atomic
from mnistnn.core.locks import exclusive
from mnistnn.core.records import Fields, is_number
from mnistnn.data import text
from mnistnn.data.parquet import parquet_matches, parquet_metadata, write_parquet
from mnistnn.data.parse import Parsed, read_and_parse
from mnistnn.data.text import READ_SIZE
from mnistnn.errors import ConfigError, DataError
from mnistnn.inert import cell, shown
from mnistnn.limits import DECODED_BYTES, Budget, LimitExceeded

logger = logging.getLogger(__name__)

#: How many bad rows a policy error lists (all of them are in the rejects file).
SHOWN_REJECTS = 10


@dataclass(frozen=True)
class IngestSummary:
    """What one ingest did; stored as `<hash>.json` beside the Parquet so a re-run can return it."""

    source: str
    source_name: str
    sha256: str
    parquet: str
    rejects: str | None
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    label_counts: list[int]
    seconds: float
    reused: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IngestSummary:
        """Inverse of `to_dict`; a missing, unknown or inconsistent field is a DataError."""
        fields = Fields(d, "ingest summary", error=DataError)
        names = [field.name for field in dataclasses.fields(cls)]
        missing = [name for name in names if name not in fields.data]
        unknown = sorted(set(fields.data) - set(names))
        if missing or unknown:
            raise DataError(f"ingest summary: missing fields {missing}, unknown fields {unknown}")
        label_counts = fields.array("label_counts")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in label_counts):
            fields.fail("label_counts", "a list of integers >= 0")
        summary = cls(
            source=fields.string("source"),
            source_name=fields.string("source_name"),
            sha256=fields.string("sha256"),
            parquet=fields.string("parquet"),
            rejects=fields.optional_string("rejects"),
            rows_read=fields.integer("rows_read"),
            rows_accepted=fields.integer("rows_accepted"),
            rows_rejected=fields.integer("rows_rejected"),
            label_counts=label_counts,
            seconds=fields.number("seconds"),
            reused=fields.boolean("reused"),
        )
        summary._check_consistent()
        return summary

    def _check_consistent(self) -> None:
        """Counts that do not add up mean a hand-edited or corrupt summary."""
        if (
            len(self.label_counts) != N_CLASSES
            or sum(self.label_counts) != self.rows_accepted
            or self.rows_read != self.rows_accepted + self.rows_rejected
        ):
            raise DataError(f"ingest summary for {self.source_name}: row counts do not add up")

    def describe(self) -> str:
        """A few human lines for the CLI."""
        how = "reused (source unchanged)" if self.reused else "converted"
        lines = [
            f"{shown(self.source_name)}: {self.rows_read} rows read, "
            f"{self.rows_accepted} accepted, {self.rows_rejected} rejected; "
            f"{how} in {self.seconds:.2f} s",
            f"  parquet: {shown(self.parquet)}",
            f"  label counts 0-9: {' '.join(str(count) for count in self.label_counts)}",
        ]
        if self.rejects is not None:
            lines.append(f"  rejected rows: {shown(self.rejects)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Outputs:
    """The three files that belong to one source content."""

    parquet: Path
    summary: Path
    rejects: Path

    @classmethod
    def for_digest(cls, folder: Path, digest: str) -> _Outputs:
        stem = digest[:16]
        return cls(
            folder / f"{stem}.parquet", folder / f"{stem}.json", folder / f"{stem}.rejects.csv"
        )


@dataclass(frozen=True)
class _Job:
    """One ingest call: the source as given, where its outputs go, and the policy."""

    source: Path
    given: str
    digest: str
    outputs: _Outputs
    limit: float
    started: float


# --------------------------------------------------------------------------------------------
# Public API


def ingest_csv(
    path: str | os.PathLike[str],
    processed_dir: str | os.PathLike[str],
    max_rejected_fraction: float = 0.0,
) -> IngestSummary:
    """Validate the MNIST CSV at `path` (plain or .gz) and write it as Parquet in `processed_dir`.

    Returns the summary; an unchanged source returns the stored one (`reused=True`) after hashing
    only. Raises DataError naming the file when it cannot be used, or when more than
    `max_rejected_fraction` of its rows are bad (the rejects file is still written then).
    """
    started = time.perf_counter()
    limit = check_fraction(max_rejected_fraction)
    source = Path(path)
    with text.open_regular(source) as handle:
        digest = _hash_source(source, handle)
        return _ingest_open(source, str(path), handle, digest, Path(processed_dir), limit, started)


def _ingest_open(
    source: Path,
    given: str,
    handle: BinaryIO,
    digest: str,
    folder: Path,
    limit: float,
    started: float,
) -> IngestSummary:
    """`ingest_csv` once the source is open and hashed."""
    folder.mkdir(parents=True, exist_ok=True)
    job = _Job(source, given, digest, _Outputs.for_digest(folder, digest), limit, started)
    # One flock on the folder serialises cleanup, reuse checks and writes, across processes and
    # threads: temp files exist only while their writer holds it, so cleaning them under it never
    # hits a live write. Parsing runs unlocked: train and test ingests still overlap.
    with exclusive(folder, timeout=None):
        clean_temp_files(folder)  # leftovers of a crash: files are only written under this lock
        stored = _reusable_summary(job)
    if stored is not None:
        return _reuse(stored, job)
    handle.seek(0)
    again = hashlib.sha256()
    parsed = read_and_parse(Path(shown(source)), handle, Budget(shown(source)), again)
    if again.hexdigest() != digest:
        raise DataError(f"{shown(source)}: changed while it was being read; try again")
    with exclusive(folder, timeout=None):
        stored = _reusable_summary(job)  # the same content may have been ingested meanwhile
        if stored is not None:
            return _reuse(stored, job)
        return _publish(job, parsed)


# --------------------------------------------------------------------------------------------
# Orchestration: reuse or convert


def check_fraction(value: float) -> float:
    """Reject bools, NaN and values outside 0..1 early, before any file is touched."""
    if not is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"max_rejected_fraction must be a number in 0..1, got {value!r}")
    return float(value)


def _hash_source(source: Path, handle: BinaryIO) -> str:
    """sha256 of the source's bytes as they are (compressed or not), with file-level errors.

    A file larger than the decoded-bytes limit is refused unread (its text is at least as long).
    """
    size = os.fstat(handle.fileno()).st_size
    if size == 0:
        raise DataError(f"{shown(source)}: empty file (0 bytes)")
    if size > DECODED_BYTES.value():
        raise LimitExceeded(shown(source), DECODED_BYTES, f"{size:,} bytes on disk")
    digest = hashlib.sha256()
    budget = Budget(shown(source))
    try:
        for block in iter(lambda: handle.read(READ_SIZE), b""):
            digest.update(block)
            budget.check_time()
    except OSError as exc:
        raise DataError(f"{shown(source)}: cannot be read ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def _reusable_summary(job: _Job) -> IngestSummary | None:
    """The stored summary when every output of this content is complete, else None."""
    outputs, digest = job.outputs, job.digest
    if not (outputs.summary.is_file() and outputs.parquet.is_file()):
        return None
    try:
        stored = IngestSummary.from_dict(json.loads(outputs.summary.read_text("utf-8")))
    except (OSError, ValueError, DataError) as exc:
        logger.warning("%s: unusable summary (%s); converting again", outputs.summary, exc)
        return None
    if (
        stored.sha256 != digest
        or Path(stored.parquet).name != outputs.parquet.name
        or (stored.rejects is not None and not outputs.rejects.is_file())
        or not parquet_matches(outputs.parquet, digest)
    ):
        logger.warning("%s: outputs incomplete or stale; converting again", outputs.summary)
        return None
    return stored


def _reuse(stored: IngestSummary, job: _Job) -> IngestSummary:
    """Return the stored summary for this call's paths; the policy still applies to it."""
    rejects = str(job.outputs.rejects) if stored.rejects is not None else None
    if rejects is not None and _too_many(stored.rows_rejected, stored.rows_read, job.limit):
        first = _first_rejects_in_file(job.outputs.rejects)
        raise _policy_error(job, stored.rows_rejected, stored.rows_read, first, rejects)
    summary = dataclasses.replace(
        stored,
        source=job.given,
        source_name=job.source.name,
        parquet=str(job.outputs.parquet),
        rejects=rejects,
        seconds=time.perf_counter() - job.started,
        reused=True,
    )
    logger.info(
        "%s: unchanged (sha256 %s), reusing %s", shown(job.given), job.digest[:16], summary.parquet
    )
    return summary


def _publish(job: _Job, parsed: Parsed) -> IngestSummary:
    """Write rejects (if any), enforce the policy, then the Parquet, then the summary (last)."""
    rejects = _write_rejects(job.outputs.rejects, parsed)
    read, rejected = parsed.rows_read, len(parsed.reject_lines)
    if _too_many(rejected, read, job.limit):
        first = list(zip(parsed.reject_lines, parsed.reject_reasons, strict=True))
        raise _policy_error(job, rejected, read, first[:SHOWN_REJECTS], rejects)
    if len(parsed.labels) == 0:
        raise DataError(f"{shown(job.given)}: none of the {read} rows is valid; see {rejects}")
    metadata = parquet_metadata(job.source.name, job.digest, parsed)
    write_parquet(job.outputs.parquet, parsed, metadata)
    summary = IngestSummary(
        source=job.given,
        source_name=job.source.name,
        sha256=job.digest,
        parquet=str(job.outputs.parquet),
        rejects=rejects,
        rows_read=read,
        rows_accepted=len(parsed.labels),
        rows_rejected=rejected,
        label_counts=np.bincount(parsed.labels, minlength=N_CLASSES).tolist(),
        seconds=time.perf_counter() - job.started,
        reused=False,
    )
    write_json_atomic(job.outputs.summary, summary.to_dict())
    logger.info("%s: %d rows accepted, %d rejected", shown(job.given), len(parsed.labels), rejected)
    return summary


def _too_many(rejected: int, read: int, limit: float) -> bool:
    """Division, not multiplication: 2 of 20 is exactly at a limit of 0.1."""
    return rejected > 0 and rejected / read > limit


def _policy_error(
    job: _Job, rejected: int, read: int, first: list[tuple[int, str]], rejects: str | None
) -> DataError:
    """One line: the file, how many rows are bad, the first few with line and reason."""
    listed = "; ".join(f"line {line}: {reason}" for line, reason in first[:SHOWN_REJECTS])
    return DataError(
        f"{shown(job.given)}: {rejected} of {read} rows are invalid "
        f"({rejected / read:.2%}, more than max_rejected_fraction={job.limit:g}); "
        f"first {min(len(first), SHOWN_REJECTS)}: {listed}; all bad rows are in {rejects}"
    )


def _first_rejects_in_file(path: Path) -> list[tuple[int, str]]:
    """The first few (line, reason) pairs of a rejects file, to repeat a policy error on reuse."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = csv.DictReader(handle)
        return [
            (int(row["line_number"]), row["reason"])
            for row, _ in zip(rows, range(SHOWN_REJECTS), strict=False)
        ]


# --------------------------------------------------------------------------------------------
# The rejects file


def _write_rejects(path: Path, parsed: Parsed) -> str | None:
    """Write `<hash>.rejects.csv` (line_number, reason), or remove a stale one.

    Line numbers and reasons only, never the line itself: the evidence names where to look in
    the source (kept as it is), and a line from a file that should not have been read (a
    secret) is never copied into the project's data. Reasons are spreadsheet-safe cells.
    """
    if not parsed.reject_lines:
        path.unlink(missing_ok=True)
        return None
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["line_number", "reason"])
    reasons = [cell(reason) for reason in parsed.reject_reasons]
    writer.writerows(zip(parsed.reject_lines, reasons, strict=True))
    write_bytes_atomic(path, out.getvalue().encode("utf-8"))
    logger.warning("%d rejected rows written to %s", len(parsed.reject_lines), path)
    return str(path)
