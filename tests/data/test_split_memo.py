"""A snapshot reads the Parquet of new batches only: each batch's split is remembered."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest

from mnistnn.config import DataPaths
from mnistnn.data import snapshot as snapshots
from mnistnn.data.ingest import ingest_csv
from mnistnn.data.split_memo import split_counts
from tests.conftest import write_mnist_csv


def test_a_snapshot_reads_only_the_new_batches(
    tmp_path: Path, mnist_train, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # a cache of its own
    (tmp_path / "tmp").mkdir()
    paths = DataPaths(tmp_path / "data")
    pixels, labels = mnist_train
    base = ingest_csv(
        write_mnist_csv(tmp_path / "base.csv", pixels[:50], labels[:50]), paths.processed
    )
    batches = []
    for index in range(4):
        rows = slice(2000 + 37 * index, 2037 + 37 * index)
        csv = write_mnist_csv(tmp_path / f"b{index}.csv", pixels[rows], labels[rows])
        summary = ingest_csv(csv, paths.processed)
        batches.append((summary.sha256, summary.parquet))
    first = snapshots.build_snapshot(base.sha256, 50, base.parquet, batches[:3], paths)
    read: list[str] = []
    original = snapshots._cached_read

    def counted(path: str):  # type: ignore[no-untyped-def]
        read.append(path)
        return original(path)

    monkeypatch.setattr(snapshots, "_cached_read", counted)
    second = snapshots.build_snapshot(base.sha256, 50, base.parquet, batches, paths)
    assert [Path(p).name for p in read] == [Path(batches[3][1]).name]
    assert second.members[:4] == first.members  # the remembered split is the computed one
    # computed once, then remembered
    sha = uuid.uuid4().hex * 2  # never seen before
    assert split_counts([(sha, 0.1)], lambda i: (20, 2)) == [(20, 2)]
    assert split_counts([(sha, 0.1)], lambda i: (99, 9)) == [(20, 2)]


def test_new_counts_are_appended_and_a_torn_line_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first, second, torn = (uuid.uuid4().hex * 2 for _ in range(3))
    assert split_counts([(first, 0.05)], lambda i: (20, 1)) == [(20, 1)]
    [memo] = (tmp_path / "mnistnn-cache" / "split-counts").iterdir()
    before = memo.read_bytes()
    assert split_counts([(first, 0.05), (second, 0.05)], lambda i: (30, 2)) == [(20, 1), (30, 2)]
    assert memo.read_bytes() == before + f"{second} 0.05 30 2\n".encode()  # one line added
    with open(memo, "a", encoding="ascii") as handle:
        handle.write(f"{torn} 0.05 4")  # a writer killed mid-line
    assert split_counts([(torn, 0.05)], lambda i: (40, 3)) == [(40, 3)]  # counted again
    assert split_counts([(second, 0.05)], lambda i: (0, 0)) == [(30, 2)]
    assert split_counts([(second, 0.05)], lambda i: (7, 0), "other") == [(7, 0)]  # its own memo
