"""The ingest Parquet file: its schema and footer metadata, writing it, reading it back as arrays.

One row per image: `label` uint8 and `pixels` fixed_size_list<uint8>[784], zstd, many row groups,
and provenance under `mnistnn.*` keys in the footer (source hash, row counts, schema version).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset  # pq.read_table needs it: import once here, not in a read
import pyarrow.parquet as pq

from mnistnn.config import INPUT_NODES, SCHEMA_VERSION
from mnistnn.core import locations
from mnistnn.data.parse import Parsed
from mnistnn.errors import DataError
from mnistnn.types import LabelArray, PixelArray

META_PREFIX = "mnistnn."

_ROW_GROUP_SIZE = 4096  # many row groups: reading back decodes them in parallel
_PIXELS_TYPE = pa.list_(pa.field("element", pa.uint8(), nullable=False), INPUT_NODES)


def read_parquet(path: str | os.PathLike[str]) -> tuple[PixelArray, LabelArray]:
    """Read an ingested Parquet file into X (n, 784) uint8 C-contiguous and y (n,) uint8.

    Both arrays are fresh and writable (one copy out of Arrow's buffers). Raises DataError naming
    the file when it is missing, unreadable or not of the ingest layout.
    """
    if locations.is_url(path):
        path = _cached_copy(str(path))
    source = Path(path)
    if not source.is_file():
        raise DataError(f"{source}: no such file")
    try:
        table = pq.read_table(source, columns=["label", "pixels"])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{source}: not a readable ingest Parquet file ({_first_line(exc)}); "
            "ingest the CSV again"
        ) from exc
    _check_schema(source, table)
    return _table_pixels(source, table), _table_labels(table)


def load_arrays(parquet: str | os.PathLike[str]) -> tuple[PixelArray, LabelArray]:
    """X (n, 784) uint8 and y (n,) uint8 of an ingested Parquet file, cached per process.

    The cache key includes the file's size and mtime, so a replaced file is read again; the
    arrays are read-only so that no caller can change what the next caller sees. A URL
    (`s3://...`) is downloaded into the per-machine cache first (`locations.local_copy`).
    """
    if locations.is_url(parquet):
        parquet = _cached_copy(str(parquet))
    stat = Path(parquet).stat()
    return _load_arrays_cached(str(Path(parquet).resolve()), stat.st_size, stat.st_mtime_ns)


def _cached_copy(url: str) -> Path:
    """A local copy of the object at `url`; DataError naming it when there is none."""
    try:
        return locations.local_copy(url)
    except FileNotFoundError:  # NotFound: the object is missing
        raise DataError(f"{url}: no such object") from None


@functools.lru_cache(maxsize=4)
def _load_arrays_cached(path: str, size: int, mtime_ns: int) -> tuple[PixelArray, LabelArray]:
    pixels, labels = read_parquet(path)
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


def parquet_metadata(source_name: str, digest: str, parsed: Parsed) -> dict[str, str]:
    """Provenance in the Parquet footer: enough to trace any training run back to its source."""
    from mnistnn._version import __version__

    metadata = {
        "source_name": source_name,
        "source_sha256": digest,
        "rows_read": str(parsed.rows_read),
        "rows_accepted": str(len(parsed.labels)),
        "rows_rejected": str(len(parsed.reject_lines)),
        "version": __version__,
        "schema_version": str(SCHEMA_VERSION),
    }
    if parsed.header is not None:
        metadata["header"] = parsed.header[:200]
    return {META_PREFIX + key: value for key, value in metadata.items()}


def parquet_matches(path: Path, digest: str) -> bool:
    """Check the footer only (milliseconds): right source hash and current schema version."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError):
        return False
    return bool(
        metadata.get(f"{META_PREFIX}source_sha256".encode()) == digest.encode()
        and metadata.get(f"{META_PREFIX}schema_version".encode()) == str(SCHEMA_VERSION).encode()
    )


def write_parquet(path: Path, parsed: Parsed, metadata: dict[str, str]) -> None:
    """The ingest Parquet file of parsed rows, atomically (`write_rows`)."""
    write_rows(path, parsed.pixels, parsed.labels, metadata)


def write_rows(
    location: str | os.PathLike[str],
    pixels: PixelArray,
    labels: LabelArray,
    metadata: dict[str, str],
) -> None:
    """Rows as zstd Parquet in the ingest layout, whole or not at all, at a path or an `s3://`
    URL; byte-stream-split pixels write and read fastest and smallest."""
    schema = pa.schema(
        [
            pa.field("label", pa.uint8(), nullable=False),
            pa.field("pixels", _PIXELS_TYPE, nullable=False),
        ],
        metadata=metadata,
    )
    values = pa.array(np.ascontiguousarray(pixels).reshape(-1), type=pa.uint8())
    column = pa.FixedSizeListArray.from_arrays(values, type=_PIXELS_TYPE)
    table = pa.Table.from_arrays([pa.array(labels, type=pa.uint8()), column], schema=schema)
    with locations.atomic_output(location) as handle:
        pq.write_table(
            table,
            handle,
            compression="zstd",
            row_group_size=_ROW_GROUP_SIZE,
            use_dictionary=False,
            column_encoding={"label": "PLAIN", "pixels.list.element": "BYTE_STREAM_SPLIT"},
        )


def _check_schema(source: Path, table: pa.Table) -> None:
    """Refuse Parquet files that are not of the ingest layout, naming what is wrong."""
    label_type, pixels_type = table.schema.field("label").type, table.schema.field("pixels").type
    if label_type != pa.uint8() or not (
        pa.types.is_fixed_size_list(pixels_type)
        and pixels_type.list_size == INPUT_NODES
        and pixels_type.value_type == pa.uint8()
    ):
        raise DataError(
            f"{source}: not an ingest Parquet file (label: {label_type}, pixels: {pixels_type}; "
            f"expected uint8 and fixed_size_list<uint8>[{INPUT_NODES}])"
        )
    metadata = table.schema.metadata or {}
    version = metadata.get(f"{META_PREFIX}schema_version".encode())
    if version is not None and version != str(SCHEMA_VERSION).encode():
        raise DataError(
            f"{source}: written with schema version {version.decode(errors='replace')}, "
            f"this mnistnn reads {SCHEMA_VERSION}; ingest the CSV again"
        )
    if table.column("label").null_count or table.column("pixels").null_count:
        raise DataError(f"{source}: contains missing values; ingest the CSV again")


def _table_pixels(source: Path, table: pa.Table) -> PixelArray:
    """Copy each row group's flat pixel buffer into one (n, 784) array: one memcpy each."""
    pixels = np.empty((table.num_rows, INPUT_NODES), dtype=np.uint8)
    row = 0
    for chunk in table.column("pixels").chunks:
        values = chunk.flatten()
        if values.null_count:
            raise DataError(f"{source}: pixels contain missing values; ingest the CSV again")
        stop = row + len(chunk)
        pixels[row:stop] = values.to_numpy().reshape(-1, INPUT_NODES)
        row = stop
    return pixels


def _table_labels(table: pa.Table) -> LabelArray:
    labels: LabelArray = table.column("label").to_numpy().astype(np.uint8, copy=True)
    return labels


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
