"""Streaming batch scoring: one inbox input -> one predictions Parquet, with a pinned model.

Pure library (no Prefect): the `mnist-batch-predict` flow calls `score_input` once per input.

Outputs, for an input whose sha256 starts with `<sha16>`, scored by champion `<version>` (and
shadowed by challenger `<challenger>`), under the key `<sha16>-<version>[-vs-<challenger>]`:

    predictions/<key>.parquet       one row per scored digit (`COLUMNS`), in row groups
    predictions/<key>.failures.csv  source,row,reason of every row that failed (only if any)
    review/<sha16>.csv              the doubtful digits, for a person to label (`review.py`)

The Parquet file is the "done" marker: it is written to a temp file in row groups and moved into
place last (after the failures and review files), so it exists only when complete, and a rerun
with the same input, champion and challenger finds it and does no work. A new challenger (or
none) is a new key, so its shadow columns are computed for it: every file says exactly which
two models produced it. Nothing the challenger says changes the champion's columns.

Probabilities: p0..p9 are the ten outputs divided by their sum (`output_shares`, the same share
that `mnistnn predict` reports as confidence). The reference network's outputs are independent
sigmoids, so they are a comparable score in 0..1, not calibrated probabilities; a softmax
model's outputs already sum to 1. `confidence` is the share at the predicted digit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mnistnn.config import N_CLASSES, SCHEMA_VERSION
from mnistnn.core.files import atomic_write
from mnistnn.errors import DataError
from mnistnn.model.network import NeuralNetwork
from mnistnn.predict import review
from mnistnn.predict.inputs import BLOCK_BYTES, Chunk, InboxInput, RowFailure, read_chunks
from mnistnn.predict.predict import output_shares, predict_pixels
from mnistnn.types import FloatArray, IntArray

#: Rows per Parquet row group (and per progress report).
CHUNK_ROWS: Final = 65_536
DEFAULT_THRESHOLD: Final = 0.6
#: Key of the JSON summary in the Parquet file's key-value metadata.
META_KEY: Final = b"mnistnn.scoring"
#: Failures kept in the result record (the failures file has them all).
SHOWN_FAILURES: Final = 20

PROBABILITIES: Final = (
    "p0..p9 are the network's ten outputs divided by their sum (the share `mnistnn predict` "
    "reports as confidence); the reference network's outputs are independent sigmoids, so these "
    "are comparable scores in 0..1, not calibrated probabilities (a softmax model's outputs "
    "already sum to 1). confidence is the share at the predicted digit."
)

Progress = Callable[[float], None]


@dataclass(frozen=True)
class PinnedModel:
    """A registered version and its network, resolved once per run."""

    version: str
    network: NeuralNetwork


@dataclass(frozen=True)
class OutputPaths:
    """Where one (input, champion, challenger) writes."""

    key: str
    parquet: Path
    failures: Path
    review: Path

    @classmethod
    def of(
        cls,
        predictions_dir: str | Path,
        review_dir: str | Path,
        sha256: str,
        champion: str,
        challenger: str | None,
    ) -> OutputPaths:
        key = output_key(sha256, champion, challenger)
        folder = Path(predictions_dir)
        return cls(
            key,
            folder / f"{key}.parquet",
            folder / f"{key}.failures.csv",
            Path(review_dir) / f"{sha256[:16]}.csv",
        )


def output_key(sha256: str, champion: str, challenger: str | None) -> str:
    """`<sha16>-<champion>` or `<sha16>-<champion>-vs-<challenger>`."""
    key = f"{sha256[:16]}-{champion}"
    return f"{key}-vs-{challenger}" if challenger else key


@dataclass(frozen=True)
class ScoreResult:
    """What scoring one input produced (stored in the Parquet's metadata, returned on reuse)."""

    file: str
    kind: str
    sha256: str
    rows: int
    scored: int
    failed: int
    output: str
    failures_file: str | None
    review: str | None
    review_rows: int
    agreement: float | None
    label_counts: tuple[int, ...]
    mean_confidence: float | None
    model_version: str
    challenger_version: str | None
    threshold: float
    first_failures: tuple[tuple[str, int | None, str], ...] = ()
    reused: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        data = dataclasses.asdict(self)
        data["label_counts"] = list(self.label_counts)
        data["first_failures"] = [list(item) for item in self.first_failures]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreResult:
        """Inverse of `to_dict`; DataError when a field is missing or unknown."""
        names = {item.name for item in dataclasses.fields(cls)}
        if set(data) - names or {"file", "sha256", "output"} - set(data):
            raise DataError(f"scoring summary has unexpected fields: {sorted(data)}")
        fields = dict(data)
        fields["label_counts"] = tuple(int(count) for count in data.get("label_counts", ()))
        fields["first_failures"] = tuple(
            (str(s), None if r is None else int(r), str(why))
            for s, r, why in data.get("first_failures", ())
        )
        return cls(**fields)


def read_result(parquet: str | Path) -> ScoreResult | None:
    """The summary stored in a predictions Parquet; None when it is missing or unreadable."""
    try:
        metadata = pq.read_metadata(parquet).metadata or {}
        return ScoreResult.from_dict(json.loads(metadata[META_KEY]))
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException, DataError):
        return None


def schema(challenger: bool) -> pa.Schema:
    """The predictions' columns; the three challenger columns only with a challenger."""
    fields = [
        pa.field("source", pa.string(), nullable=False),
        pa.field("row", pa.int64()),
        pa.field("predicted", pa.int8(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        *(pa.field(f"p{digit}", pa.float32(), nullable=False) for digit in range(N_CLASSES)),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("scored_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
    if challenger:
        fields += [
            pa.field("challenger_version", pa.string()),
            pa.field("challenger_predicted", pa.int8()),
            pa.field("challenger_confidence", pa.float32()),
        ]
    return pa.schema(fields, metadata={b"mnistnn.probabilities": PROBABILITIES.encode()})


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
    tally = _Tally(threshold)
    pending: list[pa.RecordBatch] = []
    buffered = 0
    with contextlib.ExitStack() as files:
        out = files.enter_context(atomic_write(paths.parquet))
        writer = pq.ParquetWriter(out, schema(challenger is not None), compression="zstd")
        files.callback(writer.close)  # closed (footer written) before the file is committed
        queue = _LazyFiles(files, paths)
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
                    pending, buffered = _write_groups(writer, pending, chunk_rows, final=False)
            if progress is not None:
                progress(chunk.done)
        _write_groups(writer, pending, chunk_rows, final=True)
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
    return dataclasses.replace(result, seconds=round(time.perf_counter() - started, 4))


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


def _write_groups(
    writer: pq.ParquetWriter, pending: list[pa.RecordBatch], chunk_rows: int, *, final: bool
) -> tuple[list[pa.RecordBatch], int]:
    """Write whole row groups of `chunk_rows` (and, if `final`, the rest); keep the remainder."""
    if not pending:
        return [], 0
    table = pa.Table.from_batches(pending)
    whole = table.num_rows if final else table.num_rows - table.num_rows % chunk_rows
    if whole:
        writer.write_table(table.slice(0, whole), row_group_size=chunk_rows)
    rest = table.slice(whole)
    return rest.to_batches(), rest.num_rows


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
        queue: _LazyFiles,
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


class _LazyFiles:
    """The failures and review files, opened (atomically) at their first row only."""

    def __init__(self, files: contextlib.ExitStack, paths: OutputPaths) -> None:
        self._files = files
        self._paths = paths
        self._failures: pacsv.CSVWriter | None = None
        self._review: pacsv.CSVWriter | None = None
        self.review_rows = 0
        self.review_written = False
        self._review_kept = False

    def _open(self, path: Path, columns: pa.Schema) -> pacsv.CSVWriter:
        handle: IO[bytes] = self._files.enter_context(atomic_write(path))
        writer = pacsv.CSVWriter(handle, columns, write_options=_CSV_OPTIONS)
        self._files.callback(writer.close)
        return writer

    def failures(self, failures: list[RowFailure]) -> None:
        if not failures:
            return
        if self._failures is None:
            self._failures = self._open(self._paths.failures, _FAILURE_SCHEMA)
        self._failures.write_table(
            pa.table(
                {
                    "source": [failure.source for failure in failures],
                    "row": pa.array([failure.row for failure in failures], pa.int64()),
                    "reason": [failure.reason for failure in failures],
                },
                schema=_FAILURE_SCHEMA,
            )
        )

    def review(
        self, chunk: Chunk, indices: IntArray, batch: pa.RecordBatch, threshold: float
    ) -> None:
        self.review_rows += len(indices)
        if self._review_kept:
            return
        if self._review is None:
            if review.has_labels(self._paths.review):
                self._review_kept = True  # someone is labelling it: never overwrite their work
                return
            self._review = self._open(self._paths.review, review.SCHEMA)
            self.review_written = True
        self._review.write_table(review.queue_table(chunk.pixels, indices, batch, threshold))


_CSV_OPTIONS: Final = pacsv.WriteOptions(quoting_style="needed")
_FAILURE_SCHEMA: Final = pa.schema(
    [("source", pa.string()), ("row", pa.int64()), ("reason", pa.string())]
)


def iter_predictions(parquet: str | Path, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """A predictions file's row groups one at a time (for readers of large outputs)."""
    handle = pq.ParquetFile(parquet)
    for group in range(handle.num_row_groups):
        yield handle.read_row_group(group, columns=columns)


__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_THRESHOLD",
    "PROBABILITIES",
    "OutputPaths",
    "PinnedModel",
    "ScoreResult",
    "iter_predictions",
    "output_key",
    "read_result",
    "schema",
    "score_input",
]
