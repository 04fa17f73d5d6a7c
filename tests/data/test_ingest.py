"""Content-addressed ingest: round trip, the rejects policy, reuse, atomicity, the summary."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from mnistnn import ConfigError, DataError
from mnistnn.core.files import TEMP_PREFIX
from mnistnn.data.ingest import IngestSummary, ingest_csv
from mnistnn.data.parquet import read_parquet
from tests.data.conftest import (
    Rows,
    csv_lines,
    make_rows,
    rejects_of,
    set_field,
    write,
)


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


def _two_bad(tmp_path: Path, rows: Rows) -> Path:
    lines = csv_lines(*rows)
    lines[2] = set_field(lines[2], 1, "12")
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
    lines = [set_field(line, 2, "x") if i < 12 else line for i, line in enumerate(csv_lines(*rows))]
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
    lines = [set_field(line, 1, "11") for line in csv_lines(*rows)]
    with pytest.raises(DataError, match="none of the 20 rows is valid"):
        ingest_csv(write(tmp_path / "none.csv", "\n".join(lines)), out, 1.0)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), True, "0.1"])
def test_bad_max_rejected_fraction(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="max_rejected_fraction"):
        ingest_csv(tmp_path / "x.csv", tmp_path, value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_rejected_fraction"):
        ingest_csv(tmp_path / "x.csv", tmp_path, value)  # type: ignore[arg-type]


def test_missing_file_and_directory(tmp_path: Path, out: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        ingest_csv(tmp_path / "nope.csv", out)
    with pytest.raises(DataError, match="is a directory"):
        ingest_csv(tmp_path, out)


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
    lines[0] = set_field(lines[0], 1, "9")
    write(source, "\n".join(lines))
    second = ingest_csv(source, out)
    assert not second.reused
    assert second.parquet != first.parquet
    assert Path(first.parquet).is_file()
    assert Path(second.parquet).is_file()
    assert read_parquet(second.parquet)[1][0] == 9


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
