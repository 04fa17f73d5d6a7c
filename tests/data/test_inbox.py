"""The labelled inbox: stability rule, one batch per content, changed files, refusals."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mnistnn.config import DataPaths
from mnistnn.core.files import sha256_file
from mnistnn.data.inbox import ledger_path, scan_inbox
from mnistnn.errors import ConfigError
from tests.conftest import write_mnist_csv

NOW = 1_900_000_000.0


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    paths = DataPaths(tmp_path / "data")
    Path(paths.incoming).mkdir(parents=True)
    return paths


def drop(
    paths: DataPaths, name: str, rows: tuple[np.ndarray, np.ndarray], age: float = 60.0
) -> Path:
    path = write_mnist_csv(Path(paths.incoming) / name, *rows)
    os.utime(path, (NOW - age, NOW - age))
    return path


def scan(paths: DataPaths, now: float = NOW, **options: float):  # type: ignore[no-untyped-def]
    return scan_inbox(paths.incoming, paths, now=now, **options)


def test_empty_inbox_is_nothing_and_writes_nothing(paths: DataPaths, tmp_path: Path) -> None:
    assert scan(paths) == []
    assert scan_inbox(tmp_path / "missing", paths) == []
    assert not Path(paths.snapshots).exists()


def test_a_batch_is_ingested_once(paths: DataPaths, mnist_train) -> None:
    path = drop(paths, "a.csv", (mnist_train[0][:100], mnist_train[1][:100]))
    [batch] = scan(paths)
    assert batch.new and batch.status == "accepted"
    assert (batch.file, batch.names, batch.accepted, batch.rejected) == (
        "a.csv",
        ("a.csv",),
        100,
        0,
    )
    assert batch.sha256 == sha256_file(path)
    assert batch.parquet is not None and Path(batch.parquet).is_file()
    [again] = scan(paths, now=NOW + 100)
    assert not again.new
    assert again.first_seen == batch.first_seen and again.parquet == batch.parquet


def test_same_bytes_under_two_names_are_one_batch(paths: DataPaths, mnist_train) -> None:
    first = drop(paths, "a.csv", (mnist_train[0][:50], mnist_train[1][:50]))
    shutil.copy(first, Path(paths.incoming) / "copy-of-a.csv")
    os.utime(Path(paths.incoming) / "copy-of-a.csv", (NOW - 60, NOW - 60))
    [batch] = scan(paths)
    assert batch.names == ("a.csv", "copy-of-a.csv") and batch.file == "a.csv"
    shutil.copy(first, Path(paths.incoming) / "later.csv.tmp")  # ignored
    shutil.copy(first, Path(paths.incoming) / "third.csv")
    os.utime(Path(paths.incoming) / "third.csv", (NOW - 60, NOW - 60))
    [batch] = scan(paths, now=NOW + 10)
    assert not batch.new and batch.names == ("a.csv", "copy-of-a.csv", "third.csv")


def test_a_changed_file_is_a_new_batch_that_replaces_the_old(paths: DataPaths, mnist_train) -> None:
    drop(paths, "a.csv", (mnist_train[0][:50], mnist_train[1][:50]))
    [old] = scan(paths)
    drop(paths, "a.csv", (mnist_train[0][50:120], mnist_train[1][50:120]), age=30)
    [new] = scan(paths, now=NOW + 100)
    assert new.new and new.sha256 != old.sha256 and new.replaces == old.sha256
    assert new.accepted == 70
    ledger = json.loads(ledger_path(paths).read_text())
    assert set(ledger["batches"]) == {old.sha256, new.sha256}  # the ledger remembers both
    assert ledger["names"]["a.csv"] == new.sha256


def test_half_written_and_hidden_files_are_ignored(paths: DataPaths, mnist_train) -> None:
    rows = (mnist_train[0][:20], mnist_train[1][:20])
    for name in ("a.csv.part", "b.csv.tmp", ".c.csv", "notes.txt", "d.csv.gz.part"):
        drop(paths, name, rows)
    (Path(paths.incoming) / "empty.csv").touch()
    os.utime(Path(paths.incoming) / "empty.csv", (NOW - 60, NOW - 60))
    (Path(paths.incoming) / "folder.csv").mkdir()
    assert scan(paths) == []
    drop(paths, "fresh.csv", rows, age=2.0)  # modified 2 s ago: still being written
    assert scan(paths) == []
    [batch] = scan(paths, now=NOW + 10)  # settled by the next scan
    assert batch.file == "fresh.csv" and batch.new
    assert scan(paths, settle_seconds=0.0) != []


def test_gzip_batches_are_read(paths: DataPaths, mnist_train) -> None:
    drop(paths, "b.csv.gz", (mnist_train[0][:30], mnist_train[1][:30]))
    [batch] = scan(paths)
    assert batch.status == "accepted" and batch.accepted == 30


def test_a_bad_batch_is_refused_once_with_one_line(paths: DataPaths, mnist_train) -> None:
    labels = mnist_train[1][:40].astype(np.int64)
    labels[5] = 12
    drop(paths, "bad.csv", (mnist_train[0][:40], labels))
    narrow = Path(paths.incoming) / "narrow.csv"
    narrow.write_text("1,2,3\n4,5,6\n")
    os.utime(narrow, (NOW - 60, NOW - 60))
    good = drop(paths, "good.csv", (mnist_train[0][:40], mnist_train[1][:40]))
    batches = {batch.file: batch for batch in scan(paths)}
    assert batches["good.csv"].status == "accepted"
    for name in ("bad.csv", "narrow.csv"):
        refused = batches[name]
        assert refused.status == "refused" and refused.parquet is None and refused.new
        assert refused.reason is not None and "\n" not in refused.reason
        assert refused.reason.startswith(f"{name}:")
    assert "label 12" in batches["bad.csv"].reason
    # not retried: the next scan does not ingest it again
    import mnistnn.data.inbox as inbox

    calls: list[object] = []
    real = inbox.ingest_location
    inbox.ingest_location = lambda *a, **k: calls.append(a) or real(*a, **k)  # type: ignore[assignment]
    try:
        again = {batch.file: batch for batch in scan(paths, now=NOW + 50)}
    finally:
        inbox.ingest_location = real
    assert calls == [] and again["bad.csv"].status == "refused" and not again["bad.csv"].new
    assert again["good.csv"].sha256 == sha256_file(good)


def test_a_larger_rejected_fraction_accepts_the_batch(paths: DataPaths, mnist_train) -> None:
    labels = mnist_train[1][:40].astype(np.int64)
    labels[5] = 12
    drop(paths, "bad.csv", (mnist_train[0][:40], labels))
    [batch] = scan(paths, max_rejected_fraction=0.1)
    assert (batch.status, batch.accepted, batch.rejected) == ("accepted", 39, 1)


def test_order_is_first_seen_then_sha256(paths: DataPaths, mnist_train) -> None:
    drop(paths, "z-first.csv", (mnist_train[0][:10], mnist_train[1][:10]))
    scan(paths)
    drop(paths, "b.csv", (mnist_train[0][10:20], mnist_train[1][10:20]))
    drop(paths, "a.csv", (mnist_train[0][20:30], mnist_train[1][20:30]))
    batches = scan(paths, now=NOW + 100)
    assert batches[0].file == "z-first.csv"
    later = batches[1:]
    assert later[0].first_seen == later[1].first_seen
    assert [b.sha256 for b in later] == sorted(b.sha256 for b in later)


def test_a_removed_file_leaves_the_snapshot_and_keeps_its_place(
    paths: DataPaths, mnist_train
) -> None:
    path = drop(paths, "a.csv", (mnist_train[0][:10], mnist_train[1][:10]))
    [batch] = scan(paths)
    data = path.read_bytes()
    path.unlink()
    assert scan(paths, now=NOW + 10) == []
    path.write_bytes(data)
    os.utime(path, (NOW - 60, NOW - 60))
    [back] = scan(paths, now=NOW + 20)
    assert back.first_seen == batch.first_seen and not back.new


def test_bad_options_are_refused(paths: DataPaths) -> None:
    with pytest.raises(ConfigError, match="settle_seconds"):
        scan(paths, settle_seconds=-1.0)
    with pytest.raises(ValueError, match="max_rejected_fraction"):
        scan(paths, max_rejected_fraction=2.0)


def test_concurrent_scans_lose_no_batch_and_announce_each_once(
    store_url: str, tmp_path: Path, mnist_train
) -> None:
    """Two scanners (threads with their own DataPaths: two machines on S3) race on one inbox."""
    from concurrent.futures import ThreadPoolExecutor

    from mnistnn.core import locations

    root = DataPaths.at(store_url)
    for index in range(3):
        rows = (mnist_train[0][index * 10 : index * 10 + 10], mnist_train[1][index * 10 :][:10])
        local = write_mnist_csv(tmp_path / f"b{index}.csv", *rows)
        locations.write_bytes(locations.join(root.incoming, local.name), local.read_bytes())
    locations.write_bytes(locations.join(root.incoming, "b9.csv.tmp"), b"being written")

    def one_scan(_: int) -> list:  # type: ignore[type-arg]
        paths = DataPaths.at(store_url)
        return scan_inbox(paths.incoming, paths, settle_seconds=0.0)

    with ThreadPoolExecutor(2) as pool:
        scans = list(pool.map(one_scan, range(2)))
    for found in scans:
        assert sorted(batch.file for batch in found) == ["b0.csv", "b1.csv", "b2.csv"]
    announced = [batch.sha256 for found in scans for batch in found if batch.new]
    assert sorted(announced) == sorted(batch.sha256 for batch in scans[0])  # each exactly once
    ledger = json.loads(locations.read_bytes(ledger_path(root)))
    assert sorted(ledger["names"]) == ["b0.csv", "b1.csv", "b2.csv"]
    assert {batch.parquet for batch in scans[1]} == {
        str(locations.join(root.processed, ledger["batches"][sha]["parquet"]))
        for sha in ledger["batches"]
    }
