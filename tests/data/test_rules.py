"""The line and field rules: every kind of bad row, its reason, and a random mix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnistnn.data.ingest import ingest_csv
from mnistnn.data.parquet import read_parquet
from tests.data.conftest import (
    KAGGLE_HEADER,
    Rows,
    assert_counts_add_up,
    csv_lines,
    make_rows,
    rejects_of,
    set_field,
    write,
)

BAD_ROWS: dict[str, tuple[Callable[[str], str], str]] = {
    "too few fields": (lambda line: line.rsplit(",", 1)[0], "expected 785 fields, got 784"),
    "too many fields": (lambda line: line + ",0", "expected 785 fields, got 786"),
    "label out of range": (lambda line: set_field(line, 1, "12"), "label 12 is not in 0..9"),
    "negative label": (lambda line: set_field(line, 1, "-1"), "label -1 is not in 0..9"),
    "pixel out of range": (
        lambda line: set_field(line, 57, "301"),
        "pixel 301 at column 57 is not in 0..255",
    ),
    "negative pixel": (
        lambda line: set_field(line, 5, "-1"),
        "pixel -1 at column 5 is not in 0..255",
    ),
    "huge pixel": (
        lambda line: set_field(line, 9, "70000"),
        "pixel 70000 at column 9 is not in 0..255",
    ),
    "empty field": (lambda line: set_field(line, 3, ""), "empty field at column 3"),
    "blank field": (lambda line: set_field(line, 3, "  "), "empty field at column 3"),
    "empty label": (lambda line: set_field(line, 1, ""), "empty field at column 1"),
    "empty last field": (lambda line: set_field(line, 785, ""), "empty field at column 785"),
    "non-numeric": (
        lambda line: set_field(line, 10, "abc"),
        "non-numeric field 'abc' at column 10",
    ),
    "float": (lambda line: set_field(line, 10, "3.5"), "non-integer field '3.5' at column 10"),
    "hexadecimal": (
        lambda line: set_field(line, 10, "0x10"),
        "non-numeric field '0x10' at column 10",
    ),
    "inner space": (
        lambda line: set_field(line, 10, "1 2"),
        "non-numeric field '1 2' at column 10",
    ),
    "quoted": (lambda line: set_field(line, 2, '"5"'), "non-numeric field '\"5\"' at column 2"),
    "lone carriage return": (
        lambda line: set_field(line, 4, "1\r2"),
        "non-numeric field '1\\r2' at column 4",
    ),
    "non-ascii digit": (
        lambda line: set_field(line, 6, "٥"),
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
    assert rejects_of(summary) == [{"line_number": "8", "reason": reason}]  # never the line
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
