"""The scoring inbox: what counts as an input, its identity, and reading it in chunks."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from mnistnn.predict.inputs import (
    LOOSE_IMAGES,
    InboxInput,
    InputRefused,
    discover,
    identify,
)
from mnistnn.predict.predict import read_unlabelled_csv
from mnistnn.predict.readers import read_chunks
from tests.predict.scoring_fixtures import (
    HEADER,
    pixel_lines,
    write_images,
    write_pixel_csv,
    write_pixel_parquet,
)


def read_all(item: InboxInput, **options: int) -> tuple[np.ndarray, list, list]:
    pixels, where, failures = [], [], []
    for chunk in read_chunks(item, **options):
        pixels.append(chunk.pixels)
        where += list(chunk.rows) if chunk.rows is not None else list(chunk.sources or [])
        failures += chunk.failures
    return np.concatenate(pixels), where, failures


def only(folder: Path) -> InboxInput:
    [item] = discover(folder).inputs
    return item


def test_discover_finds_each_kind_and_skips_the_rest(mnist_test, tmp_path: Path) -> None:
    pixels = mnist_test[0][:3]
    write_pixel_csv(tmp_path / "a.csv", pixels)
    write_pixel_csv(tmp_path / "b.csv.gz", pixels)
    write_pixel_parquet(tmp_path / "c.parquet", pixels)
    write_images(tmp_path / "photos", pixels)
    write_images(tmp_path, pixels[:1], corrupt=False)  # a loose d0.png
    (tmp_path / ".tmp-d.csv.x").write_text("half written")
    (tmp_path / "notes.txt").write_text("hello")
    inbox = discover(tmp_path)
    kinds = {item.name: item.kind for item in inbox.inputs}
    assert kinds == {
        "a.csv": "csv",
        "b.csv.gz": "csv",
        "c.parquet": "parquet",
        "photos": "images",
        LOOSE_IMAGES: "images",
    }
    assert inbox.skipped == ("notes.txt: not a .csv, .csv.gz, .parquet, image or folder of images",)
    photos = next(item for item in inbox.inputs if item.name == "photos")
    assert [Path(m).name for m in photos.members] == ["broken.png", "d0.png", "d1.png", "d2.png"]
    assert discover(tmp_path / "missing").inputs == ()


def test_identity_is_content_not_name(mnist_test, tmp_path: Path) -> None:
    write_pixel_csv(tmp_path / "one" / "a.csv", mnist_test[0][:3])
    shutil.copy(tmp_path / "one" / "a.csv", tmp_path / "b.csv")
    assert identify(only(tmp_path / "one")) == identify(
        next(i for i in discover(tmp_path).inputs if i.name == "b.csv")
    )
    folder = tmp_path / "imgs" / "photos"
    write_images(folder, mnist_test[0][:2], corrupt=False)
    before = identify(only(tmp_path / "imgs"))
    write_images(folder, mnist_test[0][2:4], corrupt=False)  # same names, other digits
    assert identify(only(tmp_path / "imgs")) != before


@pytest.mark.parametrize("name, header", [("a.csv", True), ("a.csv", False), ("a.csv.gz", True)])
def test_csv_chunks_match_the_predict_reader(mnist_test, tmp_path: Path, name, header) -> None:
    pixels = mnist_test[0][:300]
    path = write_pixel_csv(tmp_path / name, pixels, header=header)
    got, rows, failures = read_all(only(tmp_path), block_bytes=20_000)  # ~11 rows a block
    np.testing.assert_array_equal(got, read_unlabelled_csv(path))
    assert rows == list(range(1, 301)) and failures == []


def test_bad_rows_fail_alone_and_the_rest_is_read(mnist_test, tmp_path: Path) -> None:
    pixels = mnist_test[0][:200]
    lines = [HEADER, *pixel_lines(pixels)]
    lines[10] += ",5"  # data row 10: 785 values
    lines[20] = lines[20].replace("0,", "300,", 1)  # row 20: out of range
    lines[30] = lines[30].replace("0,", "x,", 1)  # row 30: not an integer
    lines[40] = lines[40].replace("0,", "70000,", 1)  # row 40: far out of range
    lines[50] = "1,2,3"  # row 50: too few values
    lines.insert(60, "")  # a blank line is not a row
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    for block_bytes in (1 << 24, 30_000):
        got, rows, failures = read_all(only(tmp_path), block_bytes=block_bytes)
        bad = {10, 20, 30, 40, 50}
        assert rows == [row for row in range(1, 201) if row not in bad]
        np.testing.assert_array_equal(got, pixels[[row - 1 for row in rows]])
        reasons = {failure.row: failure.reason for failure in failures}
        assert sorted(reasons) == sorted(bad)
        assert "785 values" in reasons[10] and "labelled inbox" in reasons[10]
        assert reasons[20].endswith("is 300, outside 0..255")
        assert reasons[30].endswith("is 'x', not an integer")
        assert reasons[40].endswith("is 70000, outside 0..255")
        assert reasons[50] == "3 values, expected 784 pixel values"
        assert {failure.source for failure in failures} == {"bad.csv"}


@pytest.mark.parametrize("header", [True, False])
def test_a_labelled_csv_is_refused_with_a_hint(mnist_test, tmp_path: Path, header) -> None:
    pixels, labels = mnist_test[0][:5], mnist_test[1][:5]
    rows = [",".join(map(str, [label, *row])) for label, row in zip(labels, pixels, strict=True)]
    top = ["label," + HEADER] if header else []
    (tmp_path / "train.csv").write_text("\n".join(top + rows) + "\n")
    with pytest.raises(InputRefused, match="labelled file.*labelled inbox"):
        read_all(only(tmp_path))


def test_empty_and_unreadable_inputs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "empty.csv").write_text(HEADER + "\n")
    with pytest.raises(InputRefused, match="empty.csv: no data rows"):
        read_all(only(tmp_path / "a"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "trunc.csv.gz").write_bytes(gzip.compress(b"1,2,3\n" * 1000)[:40])
    with pytest.raises(InputRefused, match="trunc.csv.gz: truncated gzip file"):
        read_all(only(tmp_path / "b"))
    (tmp_path / "c" / "empty").mkdir(parents=True)
    with pytest.raises(InputRefused, match="empty: no image files"):
        read_all(only(tmp_path / "c"))


def test_parquet_rows_nulls_and_labels(mnist_test, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pixels = mnist_test[0][:50]
    (tmp_path / "a").mkdir()
    write_pixel_parquet(tmp_path / "a" / "p.parquet", pixels)
    got, rows, failures = read_all(only(tmp_path / "a"))
    np.testing.assert_array_equal(got, pixels)
    assert rows == list(range(1, 51)) and failures == []

    columns = {f"pixel{i}": pa.array(pixels[:, i].astype(np.int32)) for i in range(784)}
    columns["pixel3"] = pa.array([None] + [0] * 49, pa.int32())
    columns["pixel5"] = pa.array([0, 999] + [0] * 48, pa.int32())
    (tmp_path / "b").mkdir()
    pq.write_table(pa.table(columns), tmp_path / "b" / "q.parquet")
    got, rows, failures = read_all(only(tmp_path / "b"))
    assert rows == list(range(3, 51))
    assert [(f.row, f.reason) for f in failures] == [
        (1, "missing pixel value"),
        (2, "column 6 is 999, outside 0..255"),
    ]
    (tmp_path / "c").mkdir()
    labelled = pa.table({"label": [1], **{f"pixel{i}": [0] for i in range(784)}})
    pq.write_table(labelled, tmp_path / "c" / "l.parquet")
    with pytest.raises(InputRefused, match="labelled"):
        read_all(only(tmp_path / "c"))


def test_unreadable_images_are_failures_not_errors(mnist_test, tmp_path: Path) -> None:
    write_images(tmp_path / "photos", mnist_test[0][:3])
    got, sources, failures = read_all(only(tmp_path))
    assert sources == ["photos/d0.png", "photos/d1.png", "photos/d2.png"]
    assert got.shape == (3, 784)
    [failure] = failures
    assert failure.source == "photos/broken.png" and failure.row is None
    assert "photos" not in failure.reason  # the source names the file; the reason says why
