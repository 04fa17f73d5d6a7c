"""Ingest where the CSV or the processed folder is an `s3://` URL, through the storage layer.

The conversion itself is `ingest_csv`, unchanged, run on local copies: a CSV URL is streamed
into `<tmp>/mnistnn-cache/src-<sha16>/` (`locations.download`: one chunk in memory) and, when
`processed_dir` is a URL, the outputs are converted into `<tmp>/mnistnn-cache/processed/` and
then uploaded under their content-addressed names, rejects and Parquet first and the summary
JSON (which vouches that the others are complete) last, so another machine sees either no
summary or whole outputs. A summary already in the bucket for the same content is reused
without converting again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from mnistnn.core import locations
from mnistnn.data.ingest import IngestSummary, ingest_csv
from mnistnn.errors import DataError, NotFound, StorageUnavailable
from mnistnn.inert import shown
from mnistnn.limits import DECODED_BYTES, LimitExceeded

log = logging.getLogger(__name__)


def ingest_location(
    path: str | os.PathLike[str],
    processed_dir: str | os.PathLike[str],
    max_rejected_fraction: float = 0.0,
) -> IngestSummary:
    """`ingest_csv` for local paths or URLs (see the module docstring)."""
    if not locations.is_url(path) and not locations.is_url(processed_dir):
        return ingest_csv(path, processed_dir, max_rejected_fraction=max_rejected_fraction)
    given = os.fspath(path)
    local, digest = _download_input(given)
    if not locations.is_url(processed_dir):
        with _named_as(local, given):
            summary = ingest_csv(local, processed_dir, max_rejected_fraction=max_rejected_fraction)
        return dataclasses.replace(summary, source=given)
    stem = digest[:16]
    remote_summary = locations.join(processed_dir, f"{stem}.json")
    stored = _stored_summary(remote_summary, digest)
    if stored is not None:
        log.info("%s: unchanged (sha256 %s), reusing %s", given, stem, stored.parquet)
        return dataclasses.replace(stored, source=given, reused=True)
    staging = locations.cache_dir() / "processed"
    try:
        with _named_as(local, given):
            staged = ingest_csv(local, staging, max_rejected_fraction)
    except DataError as exc:  # refused by the policy: its rejects go to the bucket all the same
        cached = staging / f"{stem}.rejects.csv"
        if not (cached.is_file() and str(cached) in str(exc)):
            raise
        remote_rejects = str(locations.join(processed_dir, f"{stem}.rejects.csv"))
        locations.write_bytes(remote_rejects, cached.read_bytes())
        raise DataError(str(exc).replace(str(cached), remote_rejects)) from exc
    parquet = str(locations.join(processed_dir, f"{stem}.parquet"))
    rejects = None
    if staged.rejects is not None:
        rejects = str(locations.join(processed_dir, f"{stem}.rejects.csv"))
        locations.write_bytes(rejects, Path(staged.rejects).read_bytes())
    locations.write_bytes(parquet, Path(staged.parquet).read_bytes())
    summary = dataclasses.replace(staged, source=given, parquet=parquet, rejects=rejects)
    text = json.dumps({**summary.to_dict(), "reused": False}, indent=2, sort_keys=True) + "\n"
    locations.write_bytes(remote_summary, text.encode("utf-8"))  # last: vouches for the others
    return summary


@contextlib.contextmanager
def _named_as(local: Path, given: str) -> Iterator[None]:
    """Errors about the cached copy name the object, not a path on this machine."""
    try:
        yield
    except DataError as exc:
        message = str(exc).replace(shown(local), shown(given)).replace(str(local), given)
        raise DataError(message) from exc


def _download_input(given: str) -> tuple[Path, str]:
    """(cached copy, sha256) of the input object, streamed a chunk at a time; refused first when
    larger than the decoded-bytes limit (its text is at least that long), so a huge object is
    never even downloaded."""
    try:
        store, key = locations.split(given)
        size = store.size(key)
        if size > DECODED_BYTES.value():
            raise LimitExceeded(shown(given), DECODED_BYTES, f"{size:,} bytes stored")
        if not locations.is_url(given):  # a local file bound for a bucket: read in place
            return Path(given), locations.sha256_of(given)
        return locations.download(given)
    except StorageUnavailable:
        raise
    except (NotFound, FileNotFoundError):
        raise DataError(f"{given}: no such file or object") from None


def _stored_summary(location: locations.Location, digest: str) -> IngestSummary | None:
    """The summary in the bucket for this content, if whole and about it; else None."""
    try:
        data = json.loads(locations.read_bytes(location))
        summary = IngestSummary.from_dict(data)
    except StorageUnavailable:
        raise
    except (NotFound, FileNotFoundError):
        return None
    except (ValueError, DataError) as exc:
        log.warning("%s: unusable summary (%s); converting again", location, exc)
        return None
    if summary.sha256 != digest or not locations.exists(summary.parquet):
        return None
    return summary
