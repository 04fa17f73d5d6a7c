"""The Store contract, run on both backends: whole writes, listing, conditional writes, CAS."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mnistnn.core import storage
from mnistnn.core.storage import Store, open_store
from mnistnn.errors import NotFound, StorageError


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run `target(i)` in `count` threads started together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_round_trip_and_overwrite(store: Store) -> None:
    store.write_bytes("a/b/c.bin", b"\x00\x01" * 1000)
    assert store.read_bytes("a/b/c.bin") == b"\x00\x01" * 1000
    assert store.size("a/b/c.bin") == 2000
    assert store.exists("a/b/c.bin")
    store.write_bytes("a/b/c.bin", b"")
    assert store.read_bytes("a/b/c.bin") == b""
    assert store.join("a/b/c.bin") == f"{store.url}/a/b/c.bin"


def test_missing_key_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no such key") as info:
        store.read_bytes("nope/x.json")
    assert isinstance(info.value, FileNotFoundError)  # old `except FileNotFoundError` still works
    assert store.join("nope/x.json") in str(info.value)
    assert not store.exists("nope/x.json")
    with pytest.raises(NotFound):
        store.size("nope/x.json")
    assert store.read_versioned("nope/x.json") is None


def test_list_is_sorted_by_string_prefix(store: Store) -> None:
    for key in ["b/2", "a/b/c", "a/bb", "a/b/a", "c", "a/ba/x"]:
        store.write_bytes(key, key.encode())
    assert store.list() == ["a/b/a", "a/b/c", "a/ba/x", "a/bb", "b/2", "c"]
    assert store.list("a/b/") == ["a/b/a", "a/b/c"]
    assert store.list("a/b") == ["a/b/a", "a/b/c", "a/ba/x", "a/bb"]
    assert store.list("zzz/") == []
    # what sorts after a known key, the same on every store (S3: one request, StartAfter)
    assert list(store.list_after("", "a/bb")) == [["b/2", "c"], False]
    assert list(store.list_after("a/", "a/b/a", limit=2)) == [["a/b/c", "a/ba/x"], True]
    assert list(store.list_after("a/b/", "a/b/c")) == [[], False]


def test_local_list_skips_temp_files(local_store: Store) -> None:
    local_store.write_bytes("runs/x.json", b"{}")
    folder = local_store.local_path("runs")
    assert folder is not None
    (folder / ".tmp-x.json.abc123").write_bytes(b"partial")  # an interrupted write
    (folder / ".tmp-dir").mkdir()
    (folder / ".tmp-dir" / "y").write_bytes(b"")
    assert local_store.list() == ["runs/x.json"]


def test_delete(store: Store) -> None:
    store.write_bytes("k", b"1")
    store.delete("k")
    assert not store.exists("k")
    assert store.list() == []
    store.delete("k")  # missing is fine


def test_create_only_once(store: Store) -> None:
    assert store.create("once", b"first")
    assert not store.create("once", b"second")
    assert store.read_bytes("once") == b"first"


def test_replace_needs_the_current_token(store: Store) -> None:
    store.write_bytes("v", b"one")
    current = store.read_versioned("v")
    assert current is not None and current[0] == b"one"
    assert store.replace("v", b"two", current[1])
    assert not store.replace("v", b"three", current[1])  # stale token
    assert store.read_bytes("v") == b"two"
    newer = store.read_versioned("v")
    assert newer is not None and newer[1] != current[1]
    assert not store.replace("missing", b"x", current[1])
    assert not store.exists("missing")


def test_versioned_writes_hand_back_the_token_a_read_gives(store: Store) -> None:
    """The public calls a lease is built on: create, replace and delete by version token."""
    first = store.create_versioned("lease", b"one")
    assert first is not None and first == store.version("lease")
    assert store.create_versioned("lease", b"again") is None
    second = store.replace_versioned("lease", b"two", first)
    assert second is not None and second != first
    assert store.read_versioned("lease") == (b"two", second)
    assert store.replace_versioned("lease", b"three", first) is None  # stale token
    assert not store.delete_if("lease", first)  # stale: nothing deleted
    assert store.read_bytes("lease") == b"two"
    assert store.delete_if("lease", second)
    assert not store.exists("lease")
    assert not store.delete_if("lease", second)  # already gone


def test_update_counts_exactly_under_contention(store_url: str) -> None:
    """8 threads x 10 increments, each thread with its own store (client): exactly 80."""
    stores = [open_store(store_url) for _ in range(8)]

    def increment(old: bytes | None) -> bytes:
        count = 0 if old is None else json.loads(old)["count"]
        return json.dumps({"count": count + 1}).encode()

    def worker(i: int) -> None:
        for _ in range(10):
            stores[i].update("counter.json", increment)

    run_threads(8, worker)
    assert json.loads(stores[0].read_bytes("counter.json")) == {"count": 80}


def test_update_gives_up_naming_the_key(store: Store) -> None:
    store.write_bytes("hot", b"0")
    calls = 0

    def meddle(old: bytes | None) -> bytes:
        nonlocal calls
        calls += 1
        store.write_bytes("hot", str(calls).encode())  # another writer, every single time
        return b"mine"

    with pytest.raises(StorageError, match="gave up after 3 conflicting updates") as info:
        store.update("hot", meddle, retries=2)
    assert store.join("hot") in str(info.value)
    assert calls == 3


def test_update_backs_off_with_bounded_jitter(
    local_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every lost race sleeps a random time under a growing, capped bound; none after the last."""
    slept: list[float] = []
    monkeypatch.setattr(storage.time, "sleep", slept.append)
    local_store.write_bytes("hot", b"0")

    def meddle(old: bytes | None) -> bytes:
        local_store.write_bytes("hot", str(len(slept)).encode() + b"x")
        return b"mine"

    with pytest.raises(StorageError, match="gave up after 13 conflicting updates"):
        local_store.update("hot", meddle, retries=12)
    assert len(slept) == 12
    bounds = [min(storage.BACKOFF_CAP, storage.BACKOFF_BASE * 2**i) for i in range(12)]
    assert all(0.0 <= delay <= bound for delay, bound in zip(slept, bounds, strict=True))
    assert len(set(slept)) == 12  # jittered: no two writers wait in lock step
    assert bounds[-1] == storage.BACKOFF_CAP  # the wait stops growing


def test_update_writes_nothing_when_fn_raises(store: Store) -> None:
    store.write_bytes("k", b"kept")

    def refuse(old: bytes | None) -> bytes:
        raise ValueError("no such version")

    with pytest.raises(ValueError, match="no such version"):
        store.update("k", refuse)
    assert store.read_bytes("k") == b"kept"
    with pytest.raises(ValueError, match="retries must be 0 or more"):
        store.update("k", lambda old: b"x", retries=-1)


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a\\b", "x/.tmp-y"])
def test_bad_keys_are_refused(local_store: Store, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        local_store.write_bytes(key, b"")


def test_open_store_locations(tmp_path: Path) -> None:
    assert open_store(tmp_path).url == str(tmp_path)
    with pytest.raises(StorageError, match="unsupported storage scheme 'gs'"):
        open_store("gs://bucket/x")
    with pytest.raises(StorageError, match="3\\+ characters"):
        open_store("s3://ab/x")
    with pytest.raises(StorageError, match="must not embed credentials") as info:
        open_store("s3://AKIA:s3cr3t@bucket/x")
    assert "s3cr3t" not in str(info.value)


def test_local_path_only_on_local(local_store: Store, s3_store: Store) -> None:
    assert local_store.local_path("a/b") == Path(local_store.url) / "a" / "b"
    assert s3_store.local_path("a/b") is None
    assert s3_store.join("a/b").startswith("s3://") and s3_store.join("a/b").endswith("/root/a/b")
