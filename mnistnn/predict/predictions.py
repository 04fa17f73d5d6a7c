"""The predictions Parquet and its side files: paths, schema, stored summary, streaming writes.

Probabilities: p0..p9 are the ten outputs divided by their sum (`output_shares`, the same share
that `mnistnn predict` reports as confidence). The reference network's outputs are independent
sigmoids, so they are a comparable score in 0..1, not calibrated probabilities; a softmax
model's outputs already sum to 1. `confidence` is the share at the predicted digit.

The Parquet file is written in row groups of `chunk_rows` (`write_groups`); its key-value
metadata holds the `ScoreResult` under META_KEY (`read_result`). The failures and review files
are opened, atomically, at their first row only (`LazyFiles`). Every output may live under an
`s3://` prefix: it is streamed into a staged file and uploaded whole when complete
(`locations.atomic_output`), so another machine sees it whole or not at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mnistnn.config import N_CLASSES
from mnistnn.core import locations
from mnistnn.core.locations import Location
from mnistnn.errors import DataError
from mnistnn.inert import cell
from mnistnn.predict import review
from mnistnn.predict.inputs import Chunk, RowFailure
from mnistnn.types import IntArray

#: Key of the JSON summary in the Parquet file's key-value metadata.
META_KEY: Final = b"mnistnn.scoring"

PROBABILITIES: Final = (
    "p0..p9 are the network's ten outputs divided by their sum (the share `mnistnn predict` "
    "reports as confidence); the reference network's outputs are independent sigmoids, so these "
    "are comparable scores in 0..1, not calibrated probabilities (a softmax model's outputs "
    "already sum to 1). confidence is the share at the predicted digit."
)


@dataclass(frozen=True)
class OutputPaths:
    """Where one (input, champion, challenger) writes."""

    key: str
    parquet: Location
    failures: Location
    review: Location
    refused: Location  # `<sha16>.refused.json`: the input as a whole was refused (any model)

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
        return cls(
            key,
            locations.join(predictions_dir, f"{key}.parquet"),
            locations.join(predictions_dir, f"{key}.failures.csv"),
            locations.join(review_dir, f"{sha256[:16]}.csv"),
            locations.join(predictions_dir, f"{sha256[:16]}.refused.json"),
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
        if locations.is_url(parquet):
            if not locations.exists(parquet):
                return None
            parquet = locations.local_copy(parquet)
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


def write_groups(
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


class LazyFiles:
    """The failures and review files, opened (atomically) at their first row only."""

    def __init__(self, files: contextlib.ExitStack, paths: OutputPaths) -> None:
        self._files = files
        self._paths = paths
        self._failures: pacsv.CSVWriter | None = None
        self._review: pacsv.CSVWriter | None = None
        self.review_rows = 0
        self.review_written = False
        self._review_kept = False

    def _open(self, path: Location, columns: pa.Schema) -> pacsv.CSVWriter:
        handle: IO[bytes] = self._files.enter_context(locations.atomic_output(path))
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
                    "source": [cell(failure.source) for failure in failures],  # spreadsheet-safe
                    "row": pa.array([failure.row for failure in failures], pa.int64()),
                    "reason": [cell(failure.reason) for failure in failures],
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
    handle = pq.ParquetFile(locations.local_copy(parquet))
    for group in range(handle.num_row_groups):
        yield handle.read_row_group(group, columns=columns)


__all__ = [
    "META_KEY",
    "PROBABILITIES",
    "LazyFiles",
    "OutputPaths",
    "ScoreResult",
    "iter_predictions",
    "output_key",
    "read_result",
    "schema",
    "write_groups",
]
