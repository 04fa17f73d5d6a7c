"""Streaming batch scoring: one inbox input -> one predictions Parquet, with a pinned model.

Pure library (no Prefect): the `mnist-batch-predict` flow calls `score_input` once per input.

Outputs, for an input whose sha256 starts with `<sha16>`, scored by champion `<version>` (and
shadowed by challenger `<challenger>`), under the key `<sha16>-<version>[-vs-<challenger>]`:

    predictions/<key>.parquet       one row per scored digit (`COLUMNS`), in row groups
    predictions/<key>.failures.csv  source,row,reason of every row that failed (only if any)
    review/<sha16>.csv              the doubtful digits, for a person to label (`review.py`)

The Parquet file is the "done" marker: it is written to a temp file in row groups and moved into
place (under an `s3://` prefix: uploaded as one object) last, after the failures and review
files, so it exists only when complete, and a rerun with the same input, champion and
challenger finds it and does no work. A new challenger (or none) is a new key, so its shadow
columns are computed for it: every file says exactly which two models produced it.
Nothing the challenger says changes the champion's columns.

An input refused as a whole (whatever the reason: a limit, bad text, an unexpected error, even
MemoryError) is recorded as `predictions/<sha16>.refused.json` and raises `InputRefused` (one
line); later runs refuse the same bytes at once, without reading them (`refusals`).

`p0..p9` and `confidence` are shares of the network's outputs (`predictions.PROBABILITIES`); the
Parquet schema, its stored summary and the side files are in `predictions`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mnistnn.config import N_CLASSES, SCHEMA_VERSION
from mnistnn.core import locations
from mnistnn.errors import ConfigError
from mnistnn.model.network import NeuralNetwork
from mnistnn.predict import refusals, review
from mnistnn.predict.inputs import Chunk, InboxInput, InputRefused, RowFailure
from mnistnn.predict.predict import output_shares, predict_pixels
from mnistnn.predict.predictions import (
    META_KEY,
    LazyFiles,
    OutputPaths,
    ScoreResult,
    read_result,
    schema,
    write_groups,
)
from mnistnn.predict.readers import read_chunks
from mnistnn.predict.tabular import BLOCK_BYTES
from mnistnn.types import FloatArray, IntArray

#: Rows per Parquet row group (and per progress report).
CHUNK_ROWS: Final = 65_536
DEFAULT_THRESHOLD: Final = 0.6
#: Failures kept in the result record (the failures file has them all).
SHOWN_FAILURES: Final = 20

Progress = Callable[[float], None]


@dataclass(frozen=True)
class PinnedModel:
    """A registered version and its network, resolved once per run."""

    version: str
    network: NeuralNetwork


# -- scoring ---------------------------------------------------------------------------------
def score_input(
    item: InboxInput,
    sha256: str,
    champion: PinnedModel,
    challenger: PinnedModel | None,
    *,
    predictions_dir: str | Path,
    review_dir: str | Path,
    threshold: float = DEFAULT_THRESHOLD,
    chunk_rows: int = CHUNK_ROWS,
    block_bytes: int = BLOCK_BYTES,
    progress: Progress | None = None,
) -> ScoreResult:
    """Score `item` (whose content has `sha256`) unless its output already exists.

    Every digit below `threshold` confidence, and every champion/challenger disagreement, is
    queued for review. Raises InputRefused when the input cannot be scored at all; a row that
    fails is listed, and the others are still scored.
    """
    started = time.perf_counter()
    paths = OutputPaths.of(
        predictions_dir,
        review_dir,
        sha256,
        champion.version,
        None if challenger is None else challenger.version,
    )
    stored = read_result(paths.parquet)
    if stored is not None and stored.sha256 == sha256:
        return dataclasses.replace(stored, reused=True, seconds=time.perf_counter() - started)
    refused = refusals.stored(paths.refused, sha256)
    if refused is not None:
        raise InputRefused(f"{refused} (refused before; not read again until its bytes change)")
    try:
        result = _score(
            item, sha256, champion, challenger, paths, threshold, chunk_rows, block_bytes, progress
        )
    except ConfigError:
        raise  # a bad setting (a limit's variable) is the run's error, not this input's
    except refusals.REFUSALS as exc:
        reason = refusals.reason(item.name, exc)
        refusals.record(paths.refused, sha256, reason)
        raise InputRefused(reason) from exc
    return dataclasses.replace(result, seconds=round(time.perf_counter() - started, 4))


def _score(
    item: InboxInput,
    sha256: str,
    champion: PinnedModel,
    challenger: PinnedModel | None,
    paths: OutputPaths,
    threshold: float,
    chunk_rows: int,
    block_bytes: int,
    progress: Progress | None,
) -> ScoreResult:
    """`score_input` once it is known that there is work to do."""
    tally = _Tally(threshold)
    pending: list[pa.RecordBatch] = []
    buffered = 0
    with contextlib.ExitStack() as files:
        out = files.enter_context(locations.atomic_output(paths.parquet))
        writer = pq.ParquetWriter(out, schema(challenger is not None), compression="zstd")
        files.callback(writer.close)  # closed (footer written) before the file is committed
        queue = LazyFiles(files, paths)
        for chunk in read_chunks(item, block_bytes=block_bytes):
            tally.rows += len(chunk) + len(chunk.failures)
            queue.failures(chunk.failures)
            tally.add_failures(chunk.failures)
            if len(chunk):
                batch, doubtful = _score_chunk(item, chunk, champion, challenger, tally)
                pending.append(batch)
                buffered += batch.num_rows
                if doubtful.size:
                    queue.review(chunk, doubtful, batch, threshold)
                while buffered >= chunk_rows:
                    pending, buffered = write_groups(writer, pending, chunk_rows, final=False)
            if progress is not None:
                progress(chunk.done)
        write_groups(writer, pending, chunk_rows, final=True)
        result = tally.result(item, sha256, paths, champion, challenger, queue)
        stored_result = dataclasses.replace(result, seconds=0.0)
        writer.add_key_value_metadata(
            {
                META_KEY: json.dumps(stored_result.to_dict()),
                b"mnistnn.schema_version": str(SCHEMA_VERSION),
            }
        )
    if queue.review_rows == 0:
        review.discard_untouched(paths.review)
    return result


def _score_chunk(
    item: InboxInput,
    chunk: Chunk,
    champion: PinnedModel,
    challenger: PinnedModel | None,
    tally: _Tally,
) -> tuple[pa.RecordBatch, IntArray]:
    """The chunk's predictions as a record batch, and the indices of its doubtful digits."""
    digits, outputs = predict_pixels(champion.network, chunk.pixels)
    shares = np.asarray(output_shares(outputs), dtype=np.float32)
    n = len(chunk)
    confidence = shares[np.arange(n), digits]
    columns: dict[str, pa.Array] = {
        "source": (
            pa.array(chunk.sources, pa.string())
            if chunk.sources is not None
            else pa.repeat(pa.scalar(item.name, pa.string()), n)
        ),
        "row": pa.array(chunk.rows, pa.int64())
        if chunk.rows is not None
        else pa.nulls(n, pa.int64()),
        "predicted": pa.array(digits.astype(np.int8)),
        "confidence": pa.array(confidence),
        **{f"p{digit}": pa.array(np.ascontiguousarray(shares[:, digit])) for digit in range(10)},
        "model_version": pa.repeat(pa.scalar(champion.version, pa.string()), n),
        "scored_at": pa.repeat(pa.scalar(datetime.now(UTC), pa.timestamp("ms", tz="UTC")), n),
    }
    doubtful = confidence < tally.threshold
    if challenger is not None:
        other, other_outputs = predict_pixels(challenger.network, chunk.pixels)
        other_shares = np.asarray(output_shares(other_outputs), dtype=np.float32)
        other_confidence = other_shares[np.arange(n), other]
        agree = other == digits
        tally.agreed += int(agree.sum())
        doubtful |= ~agree
        columns["challenger_version"] = pa.repeat(pa.scalar(challenger.version, pa.string()), n)
        columns["challenger_predicted"] = pa.array(other.astype(np.int8))
        columns["challenger_confidence"] = pa.array(other_confidence)
    tally.add_scores(digits, confidence)
    batch = pa.RecordBatch.from_pydict(columns, schema=schema(challenger is not None))
    return batch, np.flatnonzero(doubtful)


class _Tally:
    """Running counts of one input (O(1) memory whatever its length)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.rows = 0
        self.scored = 0
        self.failed = 0
        self.agreed = 0
        self.confidence_sum = 0.0
        self.labels = np.zeros(N_CLASSES, dtype=np.int64)
        self.shown: list[tuple[str, int | None, str]] = []

    def add_scores(self, digits: IntArray, confidence: FloatArray) -> None:
        self.scored += len(digits)
        self.labels += np.bincount(digits, minlength=N_CLASSES)[:N_CLASSES]
        self.confidence_sum += float(confidence.astype(np.float64).sum())

    def add_failures(self, failures: list[RowFailure]) -> None:
        self.failed += len(failures)
        for failure in failures[: max(0, SHOWN_FAILURES - len(self.shown))]:
            self.shown.append((failure.source, failure.row, failure.reason))

    def result(
        self,
        item: InboxInput,
        sha256: str,
        paths: OutputPaths,
        champion: PinnedModel,
        challenger: PinnedModel | None,
        queue: LazyFiles,
    ) -> ScoreResult:
        scored = self.scored
        agreement = None
        if challenger is not None and scored:
            agreement = round(self.agreed / scored, 6)
        return ScoreResult(
            file=item.name,
            kind=item.kind,
            sha256=sha256,
            rows=self.rows,
            scored=scored,
            failed=self.failed,
            output=str(paths.parquet),
            failures_file=str(paths.failures) if self.failed else None,
            review=str(paths.review) if queue.review_rows and queue.review_written else None,
            review_rows=queue.review_rows,
            agreement=agreement,
            label_counts=tuple(int(count) for count in self.labels),
            mean_confidence=round(self.confidence_sum / scored, 6) if scored else None,
            model_version=champion.version,
            challenger_version=None if challenger is None else challenger.version,
            threshold=self.threshold,
            first_failures=tuple(self.shown),
        )


__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_THRESHOLD",
    "PinnedModel",
    "score_input",
]
