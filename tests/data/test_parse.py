"""Parsing: accepted formats, the fast path, and which lines the slow path sends through Python."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnistnn.data import rules
from mnistnn.data.fast_csv import read_csv
from mnistnn.data.ingest import ingest_csv
from mnistnn.data.parquet import read_parquet
from tests.conftest import TEST_CSV
from tests.data.conftest import (
    KAGGLE_HEADER,
    Rows,
    csv_lines,
    make_rows,
    rejects_of,
    set_field,
    write,
)

BUNDLED_TEST = TEST_CSV

TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


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


def test_bundled_test_file(out: Path) -> None:
    summary = ingest_csv(BUNDLED_TEST, out)
    assert (summary.rows_read, summary.rows_accepted, summary.rows_rejected) == (10000, 10000, 0)
    assert summary.label_counts == TEST_COUNTS
    x, y = read_parquet(summary.parquet)
    want_x, want_y = read_csv(BUNDLED_TEST)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)


def test_label_only_errors_take_the_fast_path(tmp_path: Path, out: Path, rows: Rows) -> None:
    lines = csv_lines(*rows)
    lines[0] = set_field(lines[0], 1, "10")
    lines[19] = set_field(lines[19], 1, "255")
    summary = ingest_csv(write(tmp_path / "l.csv", "\n".join(lines)), out, 0.1)
    assert [(r["line_number"], r["reason"]) for r in rejects_of(summary)] == [
        ("1", "label 10 is not in 0..9"),
        ("20", "label 255 is not in 0..9"),
    ]


def test_only_doubtful_lines_go_through_python(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixels, labels = make_rows(300, seed=5)
    lines = csv_lines(pixels, labels)
    lines[40] = set_field(lines[40], 3, "abc")
    lines[41] = set_field(lines[41], 3, "999")
    lines[42] = lines[42] + ",1"
    explained: list[str] = []
    original = rules.check_line

    def spy(line: str) -> tuple[str | None, list[int]]:
        explained.append(line)
        return original(line)

    monkeypatch.setattr(rules, "check_line", spy)
    summary = ingest_csv(write(tmp_path / "a.csv", "\n".join(lines)), out, 0.01)
    assert summary.rows_rejected == 3
    assert explained == [lines[40], lines[41]]  # the field count needs no Python


def test_python_decides_when_pyarrow_disagrees(
    tmp_path: Path, out: Path, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the line classification let a bad line through, pyarrow fails and Python decides."""
    monkeypatch.setattr(rules, "SUSPICIOUS_LINE", r"\x00")  # classifies every line as clean
    lines = csv_lines(*rows)
    lines[3] = set_field(lines[3], 7, "x1")
    summary = ingest_csv(write(tmp_path / "a.csv", "\n".join(lines)), out, 0.1)
    assert [(r["line_number"], r["reason"]) for r in rejects_of(summary)] == [
        ("4", "non-numeric field 'x1' at column 7")
    ]
    np.testing.assert_array_equal(read_parquet(summary.parquet)[0], np.delete(rows[0], 3, axis=0))
