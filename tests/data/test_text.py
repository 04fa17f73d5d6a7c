"""Raw bytes to text: gzip (plain, multi-member, streamed), BOM, encodings, header, empty files."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mnistnn import DataError
from mnistnn.data.ingest import ingest_csv
from mnistnn.data.parquet import read_parquet
from tests.data.conftest import (
    KAGGLE_HEADER,
    Rows,
    csv_lines,
    make_rows,
    rejects_of,
    set_field,
    write,
)


def test_gz_and_plain_give_the_same_data(tmp_path: Path, out: Path, rows: Rows) -> None:
    text = "\n".join(csv_lines(*rows)) + "\n"
    plain = ingest_csv(write(tmp_path / "a.csv", text), out)
    packed = ingest_csv(write(tmp_path / "a.csv.gz", text), out)
    assert plain.parquet != packed.parquet  # the source bytes differ, so does the hash
    for got, want in zip(read_parquet(packed.parquet), read_parquet(plain.parquet), strict=True):
        np.testing.assert_array_equal(got, want)


def test_header_is_recorded_not_counted(tmp_path: Path, out: Path, rows: Rows) -> None:
    source = write(tmp_path / "k.csv", "\n".join([KAGGLE_HEADER, *csv_lines(*rows)]))
    summary = ingest_csv(source, out)
    assert summary.rows_read == 20
    meta = pq.read_schema(summary.parquet).metadata or {}
    assert meta[b"mnistnn.header"].startswith(b"label,pixel0,pixel1")


def test_multi_member_gzip(tmp_path: Path, out: Path, rows: Rows) -> None:
    lines = csv_lines(*rows)
    first = gzip.compress(("\n".join(lines[:7]) + "\n").encode())
    second = gzip.compress(("\n".join(lines[7:]) + "\n").encode())
    source = tmp_path / "two.csv.gz"
    source.write_bytes(first + second)
    summary = ingest_csv(source, out)
    assert summary.rows_accepted == 20
    np.testing.assert_array_equal(read_parquet(summary.parquet)[0], rows[0])


def _gz_of(rows: Rows) -> bytes:
    return gzip.compress(("\n".join(csv_lines(*rows)) + "\n").encode())


def _corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x55 for b in data[middle : middle + 64]) + data[middle + 64 :]


FILE_ERRORS: dict[str, tuple[str, Callable[[Rows], bytes], str]] = {
    "empty": ("e.csv", lambda rows: b"", r"e\.csv: empty file"),
    "blank": ("b.csv", lambda rows: b" \n\r\n\n", r"b\.csv: empty file"),
    "empty gzip": ("eg.csv.gz", lambda rows: gzip.compress(b""), r"eg\.csv\.gz: empty file"),
    "bom only": ("bo.csv", lambda rows: b"\xef\xbb\xbf\n", r"bo\.csv: empty file"),
    "header only": ("h.csv", lambda rows: (KAGGLE_HEADER + "\n").encode(), r"h\.csv: header only"),
    "header then blank lines": (
        "hb.csv",
        lambda rows: (KAGGLE_HEADER + "\r\n\r\n").encode(),
        r"hb\.csv: header only",
    ),
    "binary garbage": (
        "g.csv",
        lambda rows: np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        r"g\.csv: binary data",
    ),
    "non-utf8": (
        "l.csv",
        lambda rows: b"7,\xe9" + "\n".join(csv_lines(*rows)).encode(),
        r"l\.csv: not UTF-8 text \(byte 0xe9 at line 1\)",
    ),
    "utf16": ("u.csv", lambda rows: "1,2\n".encode("utf-16"), r"u\.csv: UTF-16 text"),
    "truncated gzip": (
        "t.csv.gz",
        lambda rows: _gz_of(rows)[: len(_gz_of(rows)) // 2],
        r"t\.csv\.gz: truncated gzip",
    ),
    "corrupt gzip": ("c.csv.gz", lambda rows: _corrupt(_gz_of(rows)), r"c\.csv\.gz: corrupt gzip"),
    "trailing garbage after gzip": (
        "tg.csv.gz",
        lambda rows: _gz_of(rows) + b"garbage!",
        r"tg\.csv\.gz: corrupt gzip",
    ),
    "not gzip despite the name": (
        "n.csv.gz.gz",
        lambda rows: b"1,2,3\n",
        r"n\.csv\.gz\.gz: corrupt gzip",
    ),
    "images only": (
        "i.csv",
        lambda rows: "\n".join(line.split(",", 1)[1] for line in csv_lines(*rows)).encode(),
        r"i\.csv: wrong column count in every row.*784 pixel columns without a label column: "
        r"the labels are missing",
    ),
    "images only with header": (
        "ih.csv.gz",
        lambda rows: gzip.compress(
            "\n".join(
                [KAGGLE_HEADER.split(",", 1)[1]]
                + [line.split(",", 1)[1] for line in csv_lines(*rows)]
            ).encode()
        ),
        r"ih\.csv\.gz: wrong column count in every row.*the labels are missing",
    ),
    "not mnist at all": (
        "w.csv",
        lambda rows: b"a,b,c\n1,2,3\n4,5,6\n",
        r"w\.csv: wrong column count in every row \(expected 785 fields, most rows have 3\)",
    ),
}


@pytest.mark.parametrize("case", list(FILE_ERRORS))
def test_file_level_errors(tmp_path: Path, out: Path, rows: Rows, case: str) -> None:
    name, content, message = FILE_ERRORS[case]
    source = tmp_path / name
    source.write_bytes(content(rows))
    with pytest.raises(DataError, match=message):
        ingest_csv(source, out, max_rejected_fraction=1.0)
    assert not list(out.glob("*.parquet"))
    assert not list(out.glob("*.json"))


def test_large_gzip_with_an_early_bad_row(tmp_path: Path, out: Path) -> None:
    """pyarrow stops at the first bad block; the rest of the gzip stream is still inflated."""
    pixels, labels = (np.tile(part, (30,) + (1,) * (part.ndim - 1)) for part in make_rows(100, 6))
    lines = csv_lines(pixels[:100], labels[:100]) * 30  # 3,000 rows, 8 MB: several CSV blocks
    lines[1] = set_field(lines[1], 1, "")
    source = tmp_path / "big.csv.gz"
    source.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1))
    summary = ingest_csv(source, out, 0.01)
    assert (summary.rows_read, summary.rows_rejected) == (3000, 1)
    assert rejects_of(summary)[0]["reason"] == "empty field at column 1"
    x, y = read_parquet(summary.parquet)
    np.testing.assert_array_equal(x, np.delete(pixels, 1, axis=0))
    np.testing.assert_array_equal(y, np.delete(labels, 1))
