"""Leases on both backends: exclusion, time-outs; on S3 also stale takeover, renewal and loss."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from mnistnn.core.storage import Store, open_store
from mnistnn.errors import StorageError
from tests.core.test_storage import run_threads


def test_two_holders_exclude_each_other(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    held = threading.Event()
    times: dict[str, float] = {}

    def hold() -> None:
        with first.lease("jobs/x.lease", "first", ttl=2.0):
            held.set()
            time.sleep(0.6)
            times["released"] = time.monotonic()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    with second.lease("jobs/x.lease", "second", ttl=2.0, timeout=10):
        times["acquired"] = time.monotonic()
    thread.join()
    assert times["acquired"] >= times["released"]


def test_lease_serialises_a_read_modify_write(store_url: str) -> None:
    """8 holders in turn each do a racy read-sleep-write: no increment is lost."""
    stores = [open_store(store_url) for _ in range(8)]
    stores[0].write_bytes("n", b"0")

    def add_one(i: int) -> None:
        with stores[i].lease("n.lease", f"worker {i}", ttl=2.0, timeout=30):
            value = int(stores[i].read_bytes("n"))
            time.sleep(0.02)
            stores[i].write_bytes("n", str(value + 1).encode())

    run_threads(8, add_one)
    assert stores[0].read_bytes("n") == b"8"


def test_timeout_names_the_key_and_the_holder(store: Store) -> None:
    other = open_store(store.url)
    with store.lease("busy.lease", "holder-A", ttl=5.0):
        started = time.monotonic()
        with pytest.raises(StorageError) as info, other.lease("busy.lease", "B", timeout=0.3):
            pass
        assert 0.3 <= time.monotonic() - started < 3
    message = str(info.value)
    assert message.startswith(f"{store.join('busy.lease')}: timed out after 0.3 s")
    assert "held by holder-A (host " in message


def test_stale_lease_is_taken_over_with_a_warning(
    s3_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    ghost = {"owner": "ghost", "host": "gone", "pid": 1, "acquired_at": 0, "expires_at": 0}
    ghost["expires_at"] = time.time() - 30
    s3_store.write_bytes("stale.lease", json.dumps(ghost).encode())
    caplog.set_level(logging.WARNING, logger="mnistnn.core.lease")
    with s3_store.lease("stale.lease", "me", ttl=5.0, timeout=2.0) as lease:
        assert json.loads(s3_store.read_bytes("stale.lease"))["owner"] == "me"
        assert not lease.lost
    url = s3_store.join("stale.lease")
    assert any(
        r.getMessage().startswith(f"taking over stale lease {url} of ghost (expired 3")
        for r in caplog.records
    ), caplog.text
    assert not s3_store.exists("stale.lease")  # released


def test_renewal_keeps_a_lease_past_its_ttl(s3_store: Store) -> None:
    other = open_store(s3_store.url)
    with s3_store.lease("long.lease", "holder", ttl=1.0) as lease:
        # 2.5 s > ttl: only renewal keeps the contender out
        with (
            pytest.raises(StorageError, match="held by holder"),
            other.lease("long.lease", "contender", ttl=1.0, timeout=2.5),
        ):
            pass
        record = json.loads(s3_store.read_bytes("long.lease"))
        assert record["expires_at"] > time.time()
        assert not lease.lost
    assert not s3_store.exists("long.lease")


def test_lost_lease_is_reported_and_not_deleted(s3_store: Store) -> None:
    held = s3_store.lease("lost.lease", "holder", ttl=0.6)
    lease = held.__enter__()
    intruder = {"owner": "intruder", "expires_at": time.time() + 60}
    s3_store.write_bytes("lost.lease", json.dumps(intruder).encode())  # as if taken over
    deadline = time.monotonic() + 5
    while not lease.lost and time.monotonic() < deadline:
        time.sleep(0.05)  # the next renewal (every ttl/3) finds the ETag changed
    assert lease.lost
    with pytest.raises(StorageError, match="lease of holder was lost while held"):
        held.__exit__(None, None, None)
    assert json.loads(s3_store.read_bytes("lost.lease"))["owner"] == "intruder"


def test_not_a_lease_is_refused(s3_store: Store) -> None:
    s3_store.write_bytes("junk.lease", b"not json")
    with pytest.raises(StorageError, match="not a lease record"), s3_store.lease("junk.lease", "x"):
        pass
