"""The scan memo: a rescan hashes only what changed, and with nothing new reads no batch bytes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mnistnn.config import DataPaths
from mnistnn.core import files
from mnistnn.core.storage_s3 import S3Store
from mnistnn.data import inbox_memo
from mnistnn.data.inbox import ledger_path, scan_inbox
from mnistnn.data.inbox_ledger import parse_ledger
from tests.conftest import write_mnist_csv

NOW = 1_900_000_000.0
_OPENS: list[str] | None = None  # the audit hook records only while a test sets this


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _OPENS is not None and event == "open" and isinstance(args[0], str | Path):
        _OPENS.append(os.fspath(args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed: it does nothing outside `opened`


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """Every file this process opens while the test runs (through the `open` audit event)."""
    global _OPENS
    _OPENS = []
    try:
        yield _OPENS
    finally:
        _OPENS = None


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    paths = DataPaths(tmp_path / "data")
    Path(paths.incoming).mkdir(parents=True)
    return paths


def drop_many(paths: DataPaths, count: int, rows: tuple[np.ndarray, np.ndarray]) -> None:
    for i in range(count):
        path = write_mnist_csv(
            Path(paths.incoming) / f"b{i:03d}.csv", rows[0][i : i + 20], rows[1][i : i + 20]
        )
        os.utime(path, (NOW - 60, NOW - 60))


def test_a_rescan_with_nothing_new_opens_no_batch_and_not_the_ledger(
    paths: DataPaths, mnist_train, opened: list[str]
) -> None:
    drop_many(paths, 5, mnist_train)
    first = scan_inbox(paths.incoming, paths, now=NOW, only_new=True)
    assert len(first) == 5 and all(batch.new for batch in first)
    opened.clear()
    assert scan_inbox(paths.incoming, paths, now=NOW + 10, only_new=True) == []
    inbox = str(paths.incoming)
    assert [name for name in opened if name.startswith(inbox)] == []
    assert str(ledger_path(paths)) not in opened
    # without only_new the batches come from the ledger, still without reading a batch
    opened.clear()
    assert len(scan_inbox(paths.incoming, paths, now=NOW + 20)) == 5
    assert [name for name in opened if name.startswith(inbox)] == []


def test_only_a_changed_file_is_hashed_again(
    paths: DataPaths, mnist_train, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_many(paths, 4, mnist_train)
    scan_inbox(paths.incoming, paths, now=NOW)
    hashed: list[str] = []
    original = files.sha256_file

    def counted(path: str | os.PathLike[str]) -> str:
        hashed.append(Path(path).name)
        return original(path)

    monkeypatch.setattr(inbox_memo, "sha256_file", counted)
    changed = write_mnist_csv(
        Path(paths.incoming) / "b002.csv", mnist_train[0][:30], mnist_train[1][:30]
    )
    os.utime(changed, (NOW - 30, NOW - 30))
    batches = scan_inbox(paths.incoming, paths, now=NOW + 10)
    assert hashed == ["b002.csv"]
    [new] = [batch for batch in batches if batch.new]
    assert new.file == "b002.csv" and new.accepted == 30 and new.replaces is not None


def test_same_size_and_mtime_rewrite_is_the_documented_blind_spot(
    paths: DataPaths, mnist_train
) -> None:
    """Rewritten in place with the same size and mtime_ns (and inode): the memo believes it
    unchanged, as inbox_memo's docstring says; dropping the memo (a cache) finds it."""
    images, labels = mnist_train[0][:20], mnist_train[1][:20]
    path = write_mnist_csv(Path(paths.incoming) / "a.csv", images, labels)
    os.utime(path, ns=(int((NOW - 60) * 1e9), int((NOW - 60) * 1e9)))
    [first] = scan_inbox(paths.incoming, paths, now=NOW)
    data = bytearray(path.read_bytes())
    data[0:1] = b"3" if data[0:1] != b"3" else b"4"  # another label, same size
    with open(path, "r+b") as handle:  # in place: same inode
        handle.write(bytes(data))
    os.utime(path, ns=(int((NOW - 60) * 1e9), int((NOW - 60) * 1e9)))
    assert scan_inbox(paths.incoming, paths, now=NOW + 10, only_new=True) == []
    inbox_memo.ScanMemo.load(paths.incoming).path.unlink()
    [changed] = scan_inbox(paths.incoming, paths, now=NOW + 20, only_new=True)
    assert changed.sha256 != first.sha256 and changed.replaces == first.sha256


def test_the_ledger_is_compact_and_unchanged_by_a_rescan(paths: DataPaths, mnist_train) -> None:
    drop_many(paths, 3, mnist_train)
    scan_inbox(paths.incoming, paths, now=NOW)
    raw = Path(ledger_path(paths)).read_bytes()
    assert raw.count(b"\n") == 1  # one line: no indentation
    assert len(parse_ledger("ledger", (raw, ""))["batches"]) == 3
    stat = Path(ledger_path(paths)).stat()
    inbox_memo.ScanMemo.load(paths.incoming).path.unlink()  # a cold memo: hashes, writes nothing
    scan_inbox(paths.incoming, paths, now=NOW + 10)
    assert Path(ledger_path(paths)).stat().st_ino == stat.st_ino


def test_a_ledger_written_by_another_scanner_is_read_again(paths: DataPaths, mnist_train) -> None:
    """The memo is clean only at the ledger version it saw: another writer's change is read."""
    drop_many(paths, 2, mnist_train)
    scan_inbox(paths.incoming, paths, now=NOW, only_new=True)
    other = DataPaths(Path(paths.root).parent / "other")  # the same ledger, another inbox
    Path(other.incoming).mkdir(parents=True)
    write_mnist_csv(
        Path(other.incoming) / "x.csv", mnist_train[0][100:120], mnist_train[1][100:120]
    )
    os.utime(Path(other.incoming) / "x.csv", (NOW - 60, NOW - 60))
    shared = DataPaths(paths.root)
    assert len(scan_inbox(other.incoming, shared, now=NOW, only_new=True)) == 1
    token = inbox_memo.ledger_token(*_split(ledger_path(paths)))
    assert inbox_memo.ScanMemo.load(paths.incoming).ledger_token != token
    assert scan_inbox(paths.incoming, paths, now=NOW + 10, only_new=True) == []
    assert inbox_memo.ScanMemo.load(paths.incoming).ledger_token == token


def _split(location):  # type: ignore[no-untyped-def]
    from mnistnn.core import locations

    return locations.split(location)


def _land(paths: DataPaths, name: str, rows: tuple[np.ndarray, np.ndarray], at: int) -> bytes:
    """Rows `at`.. of `rows` put into the inbox as `name` (from a local staging file)."""
    from mnistnn.core import locations

    staging = Path(locations.cache_dir()) / f"staging-{os.getpid()}-{name}.csv"
    data = write_mnist_csv(staging, rows[0][at : at + 20], rows[1][at : at + 20]).read_bytes()
    staging.unlink()
    locations.write_bytes(locations.join(paths.incoming, name), data)
    return data


@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, object]]]:
    """Every S3 request the store sends while the test runs: (method, arguments)."""
    calls: list[tuple[str, dict[str, object]]] = []
    original = S3Store._call

    def counted(self: S3Store, url: str, method: str, **kwargs: object) -> object:
        calls.append((method, {"url": url, **kwargs}))
        return original(self, url, method, **kwargs)

    monkeypatch.setattr(S3Store, "_call", counted)
    return calls


def test_an_s3_rescan_sends_one_listing_of_what_follows_and_one_head(
    s3_url: str, mnist_train, s3_calls: list[tuple[str, dict[str, object]]]
) -> None:
    paths = DataPaths.at(s3_url)
    for i in range(4):
        _land(paths, f"b{i}.csv", mnist_train, i)
    assert len(scan_inbox(paths.incoming, paths, only_new=True)) == 4
    s3_calls.clear()
    assert scan_inbox(paths.incoming, paths, only_new=True) == []
    # the ledger's ETag, and one listing of what sorts after the newest batch: never all of it
    assert sorted(method for method, _ in s3_calls) == ["head_object", "list_objects_v2"]
    [listing] = [asked for method, asked in s3_calls if method == "list_objects_v2"]
    assert str(listing["StartAfter"]).endswith("/incoming/b3.csv")
    s3_calls.clear()
    b0 = _land(paths, "b1.csv", mnist_train, 0)  # b0's bytes under b1's name: not new
    assert scan_inbox(paths.incoming, paths, only_new=True) == []  # before the mark: unseen
    assert scan_inbox(paths.incoming, paths) != []  # a scan without only_new lists everything
    fetched = [str(a["url"]).rpartition("/")[2] for m, a in s3_calls if m == "get_object"]
    assert [name for name in fetched if name != "inbox.json"] == ["b1.csv"]  # hashed once more
    assert b0 and scan_inbox(paths.incoming, paths, only_new=True) == []


def test_an_s3_object_named_after_the_newest_is_seen_at_once_one_before_it_at_the_recheck(
    s3_url: str, mnist_train, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The S3 mark's documented edge: a key sorting before the newest batch name is not seen
    by a watch pass until the recheck (or a scan without `only_new`, or a later name)."""
    paths = DataPaths.at(s3_url)
    for name in ("b1.csv", "b5.csv"):
        _land(paths, name, mnist_train, int(name[1]))
    assert len(scan_inbox(paths.incoming, paths, only_new=True)) == 2
    assert scan_inbox(paths.incoming, paths, only_new=True) == []
    _land(paths, "b3.csv", mnist_train, 3)  # sorts before b5.csv
    assert scan_inbox(paths.incoming, paths, only_new=True) == []
    _land(paths, "b7.csv", mnist_train, 7)  # sorts after: this pass lists it all, b3 included
    assert sorted(b.file for b in scan_inbox(paths.incoming, paths, only_new=True)) == [
        "b3.csv",
        "b7.csv",
    ]
    _land(paths, "b2.csv", mnist_train, 2)
    _land(paths, "b9.txt", mnist_train, 9)  # not a batch name: it never makes a pass list all
    assert scan_inbox(paths.incoming, paths, only_new=True) == []
    monkeypatch.setattr(inbox_memo, "RECHECK_SECONDS", 0.0)  # the mark has expired
    [late] = scan_inbox(paths.incoming, paths, only_new=True)
    assert late.file == "b2.csv"


def _aged(folder: Path) -> None:
    """The folder as it is a minute after its last entry landed (its mtime then trusted)."""
    old = time.time() - 60
    os.utime(folder, (old, old))


def test_a_pass_over_an_unchanged_folder_lists_nothing(
    paths: DataPaths, mnist_train, monkeypatch: pytest.MonkeyPatch, opened: list[str]
) -> None:
    drop_many(paths, 3, mnist_train)
    listed: list[str] = []
    scandir = os.scandir

    def counted(path):  # type: ignore[no-untyped-def]
        listed.append(os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counted)
    assert len(scan_inbox(paths.incoming, paths, now=NOW, only_new=True)) == 3
    assert listed, "a folder modified just now is not trusted: it is listed"
    _aged(Path(paths.incoming))
    scan_inbox(paths.incoming, paths, now=NOW, only_new=True)  # lists it; marks it
    listed.clear()
    opened.clear()
    assert scan_inbox(paths.incoming, paths, now=NOW + 10, only_new=True) == []
    assert listed == [] and opened == [str(inbox_memo.memo_path(paths.incoming))]
    write_mnist_csv(Path(paths.incoming) / "new.csv", mnist_train[0][50:70], mnist_train[1][50:70])
    os.utime(Path(paths.incoming) / "new.csv", (NOW - 60, NOW - 60))
    [new] = scan_inbox(paths.incoming, paths, now=NOW + 20, only_new=True)
    assert new.file == "new.csv" and str(paths.incoming) in listed


def test_a_file_appended_in_place_waits_for_the_recheck_or_a_full_scan(
    paths: DataPaths, mnist_train, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented edge case of the mark: a write in place leaves the folder's mtime."""
    drop_many(paths, 2, mnist_train)
    _aged(Path(paths.incoming))
    scan_inbox(paths.incoming, paths, now=NOW, only_new=True)
    before = Path(paths.incoming).stat().st_mtime_ns
    extra = write_mnist_csv(
        Path(paths.root) / "x.csv", mnist_train[0][80:85], mnist_train[1][80:85]
    )
    appended = Path(paths.incoming) / "b001.csv"
    with open(appended, "ab") as handle:
        handle.write(extra.read_bytes())
    os.utime(appended, (NOW - 30, NOW - 30))
    assert Path(paths.incoming).stat().st_mtime_ns == before
    assert scan_inbox(paths.incoming, paths, now=NOW + 10, only_new=True) == []  # marked
    [found] = [b for b in scan_inbox(paths.incoming, paths, now=NOW + 20) if b.new]
    assert found.file == "b001.csv" and found.accepted == 25  # a scan without only_new: at once
    with open(appended, "ab") as handle:
        handle.write(extra.read_bytes())
    os.utime(appended, (NOW - 30, NOW - 30))
    assert scan_inbox(paths.incoming, paths, now=NOW + 30, only_new=True) == []  # marked again
    monkeypatch.setattr(inbox_memo, "RECHECK_SECONDS", 0.0)  # the mark has expired
    [again] = scan_inbox(paths.incoming, paths, now=NOW + 40, only_new=True)
    assert again.file == "b001.csv" and again.accepted == 30


def test_the_readme_states_the_marks_limits() -> None:
    """The README's edge cases quote the constants the code uses."""
    from mnistnn.data import inbox_folder

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("- **Rescans cost what is new.**") :]
    assert f"older than {inbox_memo.RECHECK_SECONDS / 60:g} minutes" in section
    assert f"less than {inbox_folder.RACY_SECONDS:g} s before it was read" in section
