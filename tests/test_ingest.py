"""Validated CSV -> Parquet ingest: every bad row kind, every file-level error, idempotency."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import mnistnn
from mnistnn import ConfigError, DataError
from mnistnn.config import SCHEMA_VERSION
from mnistnn.core.files import TEMP_PREFIX
from mnistnn.data import ingest
from mnistnn.data.fast_csv import read_csv
from mnistnn.data.ingest import IngestSummary, ingest_csv, read_parquet

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_TEST = ROOT / "data" / "raw" / "mnist_test.csv.gz"
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
KAGGLE_HEADER = ",".join(["label"] + [f"pixel{i}" for i in range(784)])

Rows = tuple[np.ndarray, np.ndarray]


def make_rows(n: int = 20, seed: int = 0) -> Rows:
    """Random pixels (with plenty of 1-, 2- and 3-digit values) and labels 0..9."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def csv_lines(pixels: np.ndarray, labels: np.ndarray) -> list[str]:
    pairs = zip(labels.tolist(), pixels.tolist(), strict=True)
    return [",".join(map(str, [label, *row])) for label, row in pairs]


def write(path: Path, text: str | bytes) -> Path:
    """Write text (UTF-8) or bytes; gzip-compress when the name ends in .gz."""
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def rejects_of(summary: IngestSummary) -> list[dict[str, str]]:
    assert summary.rejects is not None
    with open(summary.rejects, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assert_counts_add_up(summary: IngestSummary) -> None:
    assert summary.rows_read == summary.rows_accepted + summary.rows_rejected
    assert sum(summary.label_counts) == summary.rows_accepted


@pytest.fixture
def rows() -> Rows:
    return make_rows()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "processed"


# --------------------------------------------------------------------------------------------
# Clean files


def test_clean_file_round_trips(tmp_path: Path, out: Path, rows: Rows) -> None:
    pixels, labels = rows
    source = write(tmp_path / "clean.csv", "\n".join(csv_lines(pixels, labels)) + "\n")
    summary = ingest_csv(source, out)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert summary.sha256 == digest
    assert summary.parquet == str(out / f"{digest[:16]}.parquet")
    assert (out / f"{digest[:16]}.json").is_file()
    assert summary.source == str(source)
    assert summary.source_name == "clean.csv"
    assert (summary.rows_read, summary.rows_accepted, summary.rows_rejected) == (20, 20, 0)
    assert summary.rejects is None
    assert not summary.reused
    assert summary.label_counts == [2] * 10
    x, y = read_parquet(summary.parquet)
    assert x.dtype == np.uint8
    assert y.dtype == np.uint8
    assert x.flags.c_contiguous
    np.testing.assert_array_equal(x, pixels)
    np.testing.assert_array_equal(y, labels)


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


def test_gz_and_plain_give_the_same_data(tmp_path: Path, out: Path, rows: Rows) -> None:
    text = "\n".join(csv_lines(*rows)) + "\n"
    plain = ingest_csv(write(tmp_path / "a.csv", text), out)
    packed = ingest_csv(write(tmp_path / "a.csv.gz", text), out)
    assert plain.parquet != packed.parquet  # the source bytes differ, so does the hash
    for got, want in zip(read_parquet(packed.parquet), read_parquet(plain.parquet), strict=True):
        np.testing.assert_array_equal(got, want)


def _crlf(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def _spaced(lines: list[str]) -> bytes:
    return "\n".join(" " + line.replace(",", " , ") + "\t" for line in lines).encode()


FORMATS: dict[str, Callable[[list[str]], bytes]] = {
    "kaggle header": lambda lines: "\n".join([KAGGLE_HEADER, *lines]).encode(),
    "numbered header": lambda lines: "\n".join(
        ["label," + ",".join(map(str, range(784))), *lines]
    ).encode(),
    "crlf": _crlf,
    "bom": lambda lines: b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n",
    "no final newline": lambda lines: "\n".join(lines).encode(),
    "extra blank lines at the end": lambda lines: ("\n".join(lines) + "\n\n \n").encode(),
    "spaces and tabs around fields": _spaced,
    "bom + header + crlf": lambda lines: b"\xef\xbb\xbf" + _crlf([KAGGLE_HEADER, *lines]),
    "leading zeros and plus signs": lambda lines: "\n".join(
        ["+" + line.replace(",0,", ",000,") for line in lines]
    ).encode(),
}


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_accepted_formats(tmp_path: Path, out: Path, rows: Rows, fmt: str, suffix: str) -> None:
    pixels, labels = rows
    source = write(tmp_path / f"in{suffix}", FORMATS[fmt](csv_lines(pixels, labels)))
    summary = ingest_csv(source, out)
    assert (summary.rows_read, summary.rows_accepted, summary.rows_rejected) == (20, 20, 0)
    x, y = read_parquet(summary.parquet)
    np.testing.assert_array_equal(x, pixels)
    np.testing.assert_array_equal(y, labels)


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


def test_bundled_test_file(out: Path) -> None:
    summary = ingest_csv(BUNDLED_TEST, out)
    assert (summary.rows_read, summary.rows_accepted, summary.rows_rejected) == (10000, 10000, 0)
    assert summary.label_counts == TEST_COUNTS
    x, y = read_parquet(summary.parquet)
    want_x, want_y = read_csv(BUNDLED_TEST)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)


# --------------------------------------------------------------------------------------------
# Bad rows


def _set_field(line: str, column: int, value: str) -> str:
    fields = line.split(",")
    fields[column - 1] = value
    return ",".join(fields)


BAD_ROWS: dict[str, tuple[Callable[[str], str], str]] = {
    "too few fields": (lambda line: line.rsplit(",", 1)[0], "expected 785 fields, got 784"),
    "too many fields": (lambda line: line + ",0", "expected 785 fields, got 786"),
    "label out of range": (lambda line: _set_field(line, 1, "12"), "label 12 is not in 0..9"),
    "negative label": (lambda line: _set_field(line, 1, "-1"), "label -1 is not in 0..9"),
    "pixel out of range": (
        lambda line: _set_field(line, 57, "301"),
        "pixel 301 at column 57 is not in 0..255",
    ),
    "negative pixel": (
        lambda line: _set_field(line, 5, "-1"),
        "pixel -1 at column 5 is not in 0..255",
    ),
    "huge pixel": (
        lambda line: _set_field(line, 9, "70000"),
        "pixel 70000 at column 9 is not in 0..255",
    ),
    "empty field": (lambda line: _set_field(line, 3, ""), "empty field at column 3"),
    "blank field": (lambda line: _set_field(line, 3, "  "), "empty field at column 3"),
    "empty label": (lambda line: _set_field(line, 1, ""), "empty field at column 1"),
    "empty last field": (lambda line: _set_field(line, 785, ""), "empty field at column 785"),
    "non-numeric": (
        lambda line: _set_field(line, 10, "abc"),
        "non-numeric field 'abc' at column 10",
    ),
    "float": (lambda line: _set_field(line, 10, "3.5"), "non-integer field '3.5' at column 10"),
    "hexadecimal": (
        lambda line: _set_field(line, 10, "0x10"),
        "non-numeric field '0x10' at column 10",
    ),
    "inner space": (
        lambda line: _set_field(line, 10, "1 2"),
        "non-numeric field '1 2' at column 10",
    ),
    "quoted": (lambda line: _set_field(line, 2, '"5"'), "non-numeric field '\"5\"' at column 2"),
    "lone carriage return": (
        lambda line: _set_field(line, 4, "1\r2"),
        "non-numeric field '1\\r2' at column 4",
    ),
    "non-ascii digit": (
        lambda line: _set_field(line, 6, "٥"),
        "non-numeric field '٥' at column 6",
    ),
    "empty line": (lambda line: "", "empty line"),
    "blank line": (lambda line: "   ", "empty line"),
}


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_each_bad_row_kind(tmp_path: Path, out: Path, rows: Rows, kind: str, suffix: str) -> None:
    pixels, labels = rows
    mutate, reason = BAD_ROWS[kind]
    lines = csv_lines(pixels, labels)
    lines[6] = mutate(lines[6])
    source = write(tmp_path / f"bad{suffix}", "\n".join([KAGGLE_HEADER, *lines]) + "\n")
    summary = ingest_csv(source, out, max_rejected_fraction=0.1)
    assert (summary.rows_read, summary.rows_accepted, summary.rows_rejected) == (20, 19, 1)
    assert_counts_add_up(summary)
    assert summary.rejects == str(out / f"{summary.sha256[:16]}.rejects.csv")
    assert rejects_of(summary) == [{"line_number": "8", "reason": reason, "raw_line": lines[6]}]
    x, y = read_parquet(summary.parquet)
    keep = np.arange(20) != 6
    np.testing.assert_array_equal(x, pixels[keep])
    np.testing.assert_array_equal(y, labels[keep])


def test_many_bad_rows_match_a_reference(tmp_path: Path, out: Path) -> None:
    """Random corruptions of 300 rows: accepted rows and reject lines match a tiny reference."""
    pixels, labels = make_rows(300, seed=3)
    lines = csv_lines(pixels, labels)
    rng = np.random.default_rng(4)
    kinds = list(BAD_ROWS.values())
    bad = sorted(set(rng.choice(300, size=60, replace=False).tolist()) - {11, 12})
    for row in bad:
        lines[row] = kinds[int(rng.integers(len(kinds)))][0](lines[row])
    lines[11] = " " + lines[11].replace(",", " ,\t")  # valid, spaced
    lines[12] = lines[12].replace(",0,", ",00,")  # valid, leading zeros
    source = write(tmp_path / "many.csv.gz", "\r\n".join(lines))
    summary = ingest_csv(source, out, max_rejected_fraction=1.0)
    assert_counts_add_up(summary)
    good = [row for row in range(300) if row not in bad]
    assert summary.rows_accepted == len(good)
    assert [int(r["line_number"]) for r in rejects_of(summary)] == [row + 1 for row in bad]
    x, y = read_parquet(summary.parquet)
    np.testing.assert_array_equal(x, pixels[good])
    np.testing.assert_array_equal(y, labels[good])


def test_label_only_errors_take_the_fast_path(tmp_path: Path, out: Path, rows: Rows) -> None:
    lines = csv_lines(*rows)
    lines[0] = _set_field(lines[0], 1, "10")
    lines[19] = _set_field(lines[19], 1, "255")
    summary = ingest_csv(write(tmp_path / "l.csv", "\n".join(lines)), out, 0.1)
    assert [(r["line_number"], r["reason"]) for r in rejects_of(summary)] == [
        ("1", "label 10 is not in 0..9"),
        ("20", "label 255 is not in 0..9"),
    ]


# --------------------------------------------------------------------------------------------
# Policy


def _two_bad(tmp_path: Path, rows: Rows) -> Path:
    lines = csv_lines(*rows)
    lines[2] = _set_field(lines[2], 1, "12")
    lines[9] = lines[9] + ",0"
    return write(tmp_path / "two_bad.csv", "\n".join(lines))


def test_rejected_fraction_at_the_limit_succeeds(tmp_path: Path, out: Path, rows: Rows) -> None:
    summary = ingest_csv(_two_bad(tmp_path, rows), out, max_rejected_fraction=0.1)
    assert (summary.rows_accepted, summary.rows_rejected) == (18, 2)
    assert [r["line_number"] for r in rejects_of(summary)] == ["3", "10"]


def test_rejected_fraction_above_the_limit_fails(tmp_path: Path, out: Path, rows: Rows) -> None:
    source = _two_bad(tmp_path, rows)
    expected = r"two_bad\.csv: 2 of 20 rows are invalid.*line 3: label 12 is not in 0\.\.9"
    with pytest.raises(DataError, match=expected) as info:
        ingest_csv(source, out, max_rejected_fraction=0.05)
    assert "line 10: expected 785 fields, got 786" in str(info.value)
    stem = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    assert (out / f"{stem}.rejects.csv").is_file()
    assert not (out / f"{stem}.parquet").exists()
    assert not (out / f"{stem}.json").exists()


def test_default_policy_refuses_any_bad_row(tmp_path: Path, out: Path, rows: Rows) -> None:
    with pytest.raises(DataError, match="2 of 20 rows are invalid"):
        ingest_csv(_two_bad(tmp_path, rows), out)


def test_policy_error_lists_the_first_ten(tmp_path: Path, out: Path, rows: Rows) -> None:
    lines = [
        _set_field(line, 2, "x") if i < 12 else line for i, line in enumerate(csv_lines(*rows))
    ]
    with pytest.raises(DataError, match="12 of 20 rows") as info:
        ingest_csv(write(tmp_path / "t.csv", "\n".join(lines)), out, 0.5)
    message = str(info.value)
    assert "line 10: non-numeric field 'x' at column 2" in message
    assert "line 11:" not in message
    assert "\n" not in message


def test_reuse_still_applies_the_policy(tmp_path: Path, out: Path, rows: Rows) -> None:
    source = _two_bad(tmp_path, rows)
    assert ingest_csv(source, out, max_rejected_fraction=0.5).rows_rejected == 2
    with pytest.raises(DataError, match=r"2 of 20 rows are invalid.*line 3: label 12"):
        ingest_csv(source, out)
    assert ingest_csv(source, out, max_rejected_fraction=0.5).reused


def test_no_valid_row_at_all_fails(tmp_path: Path, out: Path, rows: Rows) -> None:
    lines = [_set_field(line, 1, "11") for line in csv_lines(*rows)]
    with pytest.raises(DataError, match="none of the 20 rows is valid"):
        ingest_csv(write(tmp_path / "none.csv", "\n".join(lines)), out, 1.0)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), True, "0.1"])
def test_bad_max_rejected_fraction(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="max_rejected_fraction"):
        ingest_csv(tmp_path / "x.csv", tmp_path, value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_rejected_fraction"):
        ingest_csv(tmp_path / "x.csv", tmp_path, value)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# File-level errors


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


def test_missing_file_and_directory(tmp_path: Path, out: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        ingest_csv(tmp_path / "nope.csv", out)
    with pytest.raises(DataError, match="is a directory"):
        ingest_csv(tmp_path, out)


# --------------------------------------------------------------------------------------------
# Idempotency and atomicity


def test_unchanged_file_is_not_converted_again(tmp_path: Path, out: Path, rows: Rows) -> None:
    source = _two_bad(tmp_path, rows)
    first = ingest_csv(source, out, 0.1)
    outputs = [Path(first.parquet), Path(first.parquet).with_suffix(".json"), Path(first.rejects)]
    stamps = [path.stat().st_mtime_ns for path in outputs]
    second = ingest_csv(source, out, 0.1)
    assert second.reused
    assert not first.reused
    assert [path.stat().st_mtime_ns for path in outputs] == stamps
    same = {"seconds": 0.0, "reused": False}
    assert {**second.to_dict(), **same} == {**first.to_dict(), **same}


def test_same_content_elsewhere_is_reused(tmp_path: Path, out: Path, rows: Rows) -> None:
    text = "\n".join(csv_lines(*rows))
    first = ingest_csv(write(tmp_path / "a.csv", text), out)
    copy = ingest_csv(write(tmp_path / "copy.csv", text), out)
    assert copy.reused
    assert copy.parquet == first.parquet
    assert (copy.source_name, copy.source) == ("copy.csv", str(tmp_path / "copy.csv"))


def test_changed_file_gives_a_new_output(tmp_path: Path, out: Path, rows: Rows) -> None:
    source = write(tmp_path / "a.csv", "\n".join(csv_lines(*rows)))
    first = ingest_csv(source, out)
    lines = csv_lines(*rows)
    lines[0] = _set_field(lines[0], 1, "9")
    write(source, "\n".join(lines))
    second = ingest_csv(source, out)
    assert not second.reused
    assert second.parquet != first.parquet
    assert Path(first.parquet).is_file()
    assert Path(second.parquet).is_file()
    assert read_parquet(second.parquet)[1][0] == 9


def test_crash_in_parquet_write_leaves_nothing(
    tmp_path: Path, out: Path, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write(tmp_path / "a.csv", "\n".join(csv_lines(*rows)))

    def crash(table: object, where: object, **kwargs: object) -> None:
        if hasattr(where, "write"):
            where.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr("mnistnn.data.ingest.pq.write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        ingest_csv(source, out)
    assert list(out.iterdir()) == []


def test_crash_before_rename_leaves_nothing(
    tmp_path: Path, out: Path, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write(tmp_path / "a.csv", "\n".join(csv_lines(*rows)))

    def crash(src: str, dst: str) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        ingest_csv(source, out)
    monkeypatch.undo()
    assert not list(out.glob("*.parquet"))
    assert not list(out.glob("*.json"))


def test_leftover_temp_file_is_ignored_and_cleaned(tmp_path: Path, out: Path, rows: Rows) -> None:
    source = write(tmp_path / "a.csv", "\n".join(csv_lines(*rows)))
    stem = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    out.mkdir()
    leftover = out / f"{TEMP_PREFIX}{stem}.parquet.k1ll3d"
    leftover.write_bytes(b"PAR1 half written")
    summary = ingest_csv(source, out)
    assert not summary.reused
    assert not leftover.exists()
    np.testing.assert_array_equal(read_parquet(summary.parquet)[0], rows[0])


def test_parquet_without_summary_is_converted_again(tmp_path: Path, out: Path, rows: Rows) -> None:
    """A crash between the Parquet and the JSON: the output is not trusted."""
    source = write(tmp_path / "a.csv", "\n".join(csv_lines(*rows)))
    first = ingest_csv(source, out)
    Path(first.parquet).with_suffix(".json").unlink()
    assert not ingest_csv(source, out).reused
    assert ingest_csv(source, out).reused


def test_summary_without_parquet_is_converted_again(tmp_path: Path, out: Path, rows: Rows) -> None:
    source = write(tmp_path / "a.csv", "\n".join(csv_lines(*rows)))
    first = ingest_csv(source, out)
    Path(first.parquet).unlink()
    again = ingest_csv(source, out)
    assert not again.reused
    assert Path(again.parquet).is_file()


@pytest.mark.parametrize("damage", ["not json", "wrong counts", "other parquet", "bad parquet"])
def test_damaged_outputs_are_converted_again(
    tmp_path: Path, out: Path, rows: Rows, damage: str
) -> None:
    source = write(tmp_path / "a.csv", "\n".join(csv_lines(*rows)))
    first = ingest_csv(source, out)
    summary_path = Path(first.parquet).with_suffix(".json")
    data = json.loads(summary_path.read_text())
    if damage == "not json":
        summary_path.write_text("{")
    elif damage == "wrong counts":
        summary_path.write_text(json.dumps({**data, "rows_accepted": 3}))
    elif damage == "other parquet":
        summary_path.write_text(json.dumps({**data, "parquet": str(out / "elsewhere.parquet")}))
    else:
        Path(first.parquet).write_bytes(b"not parquet")
    again = ingest_csv(source, out)
    assert not again.reused
    np.testing.assert_array_equal(read_parquet(again.parquet)[0], rows[0])


# --------------------------------------------------------------------------------------------
# Summary and read_parquet


def test_summary_json_round_trip(tmp_path: Path, out: Path, rows: Rows) -> None:
    summary = ingest_csv(_two_bad(tmp_path, rows), out, 0.1)
    stored = json.loads(Path(summary.parquet).with_suffix(".json").read_text())
    assert IngestSummary.from_dict(stored) == summary
    assert IngestSummary.from_dict(json.loads(json.dumps(summary.to_dict()))) == summary
    text = summary.describe()
    assert "two_bad.csv: 20 rows read, 18 accepted, 2 rejected" in text
    assert summary.parquet in text
    assert str(summary.rejects) in text
    with pytest.raises(DataError, match="missing fields"):
        IngestSummary.from_dict({k: v for k, v in stored.items() if k != "sha256"})


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


# --------------------------------------------------------------------------------------------
# How the work is done


def test_only_doubtful_lines_go_through_python(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixels, labels = make_rows(300, seed=5)
    lines = csv_lines(pixels, labels)
    lines[40] = _set_field(lines[40], 3, "abc")
    lines[41] = _set_field(lines[41], 3, "999")
    lines[42] = lines[42] + ",1"
    explained: list[str] = []
    original = ingest._check_line

    def spy(line: str) -> tuple[str | None, list[int]]:
        explained.append(line)
        return original(line)

    monkeypatch.setattr(ingest, "_check_line", spy)
    summary = ingest_csv(write(tmp_path / "a.csv", "\n".join(lines)), out, 0.01)
    assert summary.rows_rejected == 3
    assert explained == [lines[40], lines[41]]  # the field count needs no Python


def test_python_decides_when_pyarrow_disagrees(
    tmp_path: Path, out: Path, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the line classification let a bad line through, pyarrow fails and Python decides."""
    monkeypatch.setattr(ingest, "_SUSPICIOUS_LINE", r"\x00")  # classifies every line as clean
    lines = csv_lines(*rows)
    lines[3] = _set_field(lines[3], 7, "x1")
    summary = ingest_csv(write(tmp_path / "a.csv", "\n".join(lines)), out, 0.1)
    assert [(r["line_number"], r["reason"]) for r in rejects_of(summary)] == [
        ("4", "non-numeric field 'x1' at column 7")
    ]
    np.testing.assert_array_equal(read_parquet(summary.parquet)[0], np.delete(rows[0], 3, axis=0))


def test_concurrent_ingests_into_one_folder(tmp_path: Path, out: Path) -> None:
    """Threads (like parallel pipeline tasks) share the folder; cleanup never hits a writer."""
    from concurrent.futures import ThreadPoolExecutor

    sources = []
    for seed in range(4):
        pixels, labels = make_rows(50, seed=seed)
        sources.append(write(tmp_path / f"s{seed}.csv.gz", "\n".join(csv_lines(pixels, labels))))
    with ThreadPoolExecutor(max_workers=4) as pool:
        summaries = list(pool.map(lambda source: ingest_csv(source, out), sources + sources[:2]))
    assert len({summary.parquet for summary in summaries}) == 4
    assert sum(summary.reused for summary in summaries) == 2
    for seed, summary in enumerate(summaries[:4]):
        np.testing.assert_array_equal(read_parquet(summary.parquet)[0], make_rows(50, seed)[0])


def test_large_gzip_with_an_early_bad_row(tmp_path: Path, out: Path) -> None:
    """pyarrow stops at the first bad block; the rest of the gzip stream is still inflated."""
    pixels, labels = (np.tile(part, (30,) + (1,) * (part.ndim - 1)) for part in make_rows(100, 6))
    lines = csv_lines(pixels[:100], labels[:100]) * 30  # 3,000 rows, 8 MB: several CSV blocks
    lines[1] = _set_field(lines[1], 1, "")
    source = tmp_path / "big.csv.gz"
    source.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1))
    summary = ingest_csv(source, out, 0.01)
    assert (summary.rows_read, summary.rows_rejected) == (3000, 1)
    assert rejects_of(summary)[0]["reason"] == "empty field at column 1"
    x, y = read_parquet(summary.parquet)
    np.testing.assert_array_equal(x, np.delete(pixels, 1, axis=0))
    np.testing.assert_array_equal(y, np.delete(labels, 1))
