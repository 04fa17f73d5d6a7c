"""The ingest Parquet file: layout, footer metadata, atomic writing, and read_parquet's errors."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import mnistnn
from mnistnn import DataError
from mnistnn.config import SCHEMA_VERSION
from mnistnn.data.ingest import ingest_csv
from mnistnn.data.parquet import read_parquet
from tests.data.conftest import Rows, csv_lines, write


def test_parquet_layout_and_metadata(tmp_path: Path, out: Path, rows: Rows) -> None:
    source = write(tmp_path / "a.csv", "\n".join(csv_lines(*rows)))
    summary = ingest_csv(source, out)
    schema = pq.read_schema(summary.parquet)
    assert str(schema.field("label").type) == "uint8"
    assert str(schema.field("pixels").type).startswith("fixed_size_list<")
    assert schema.field("pixels").type.list_size == 784
    meta = {key.decode(): value.decode() for key, value in (schema.metadata or {}).items()}
    assert meta["mnistnn.source_name"] == "a.csv"
    assert meta["mnistnn.source_sha256"] == summary.sha256
    assert (meta["mnistnn.rows_read"], meta["mnistnn.rows_accepted"]) == ("20", "20")
    assert meta["mnistnn.rows_rejected"] == "0"
    assert meta["mnistnn.version"] == mnistnn.__version__
    assert meta["mnistnn.schema_version"] == str(SCHEMA_VERSION)
    assert pq.ParquetFile(summary.parquet).metadata.row_group(0).column(1).compression == "ZSTD"


def test_crash_in_parquet_write_leaves_nothing(
    tmp_path: Path, out: Path, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write(tmp_path / "a.csv", "\n".join(csv_lines(*rows)))

    def crash(table: object, where: object, **kwargs: object) -> None:
        if hasattr(where, "write"):
            where.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr("mnistnn.data.parquet.pq.write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        ingest_csv(source, out)
    assert list(out.iterdir()) == []


def test_read_parquet_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"gone\.parquet: no such file"):
        read_parquet(tmp_path / "gone.parquet")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"garbage\.parquet: not a readable ingest Parquet file"):
        read_parquet(garbage)
    import pyarrow as pa

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"label": pa.array([1], pa.int64()), "pixels": [[1, 2]]}), other)
    with pytest.raises(DataError, match=re.escape("other.parquet: not an ingest Parquet file")):
        read_parquet(other)
    missing_column = tmp_path / "nolabel.parquet"
    pq.write_table(pa.table({"x": [1]}), missing_column)
    with pytest.raises(DataError, match=r"nolabel\.parquet"):
        read_parquet(missing_column)


def test_read_parquet_refuses_another_schema_version(tmp_path: Path, out: Path, rows: Rows) -> None:
    summary = ingest_csv(write(tmp_path / "a.csv", "\n".join(csv_lines(*rows))), out)
    table = pq.read_table(summary.parquet)
    future = tmp_path / "future.parquet"
    metadata = {**(table.schema.metadata or {}), b"mnistnn.schema_version": b"999"}
    pq.write_table(table.replace_schema_metadata(metadata), future)
    with pytest.raises(DataError, match=r"future\.parquet: written with schema version 999"):
        read_parquet(future)
