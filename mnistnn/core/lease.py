"""Leases: an exclusive claim on a key; an flock on one machine, a renewed JSON object on S3.

The object lease is `{owner, host, pid, lease_id, acquired_at, expires_at}` written with
`create` (if absent); an expired one is taken over with `replace` on the ETag just read, so of
several takers exactly one wins. A daemon thread renews it every ttl/3 with `replace` on its own
last token; a renewal that finds the token changed marks the lease lost. Expiry compares wall
clocks, so the machines sharing a bucket need clocks in step to well under the ttl (NTP).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistnn.core.locks import exclusive
from mnistnn.errors import StorageError

if TYPE_CHECKING:
    from mnistnn.core.storage import Store

log = logging.getLogger(__name__)


class Lease:
    """A held lease. `lost` turns True when another holder may have taken it over."""

    def __init__(self, url: str, owner: str) -> None:
        self.url = url
        self.owner = owner

    @property
    def lost(self) -> bool:
        return False

    def check(self) -> None:
        """StorageError if the lease was lost (call before committing work done under it)."""
        if self.lost:
            raise StorageError(f"{self.url}: lease of {self.owner} was lost while held")


def _record(owner: str, ttl: float | None) -> dict[str, Any]:
    now = time.time()
    return {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "lease_id": uuid.uuid4().hex,  # makes every record's bytes (and so its ETag) unique
        "acquired_at": now,
        "expires_at": None if ttl is None else now + ttl,
    }


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True).encode("utf-8")


def _describe(record: dict[str, Any] | None) -> str:
    """'owner (host h, pid p, expires in n s)' for time-out messages."""
    if record is None:
        return "an unknown holder"
    text = f"{record.get('owner')} (host {record.get('host')}, pid {record.get('pid')}"
    expires_at = record.get("expires_at")
    if isinstance(expires_at, int | float):
        text += f", expires in {expires_at - time.time():.0f} s"
    return text + ")"


# -- one machine: flock ----------------------------------------------------------------------


@contextlib.contextmanager
def flock_lease(path: Path, owner: str, timeout: float) -> Iterator[Lease]:
    """Hold an flock on `path` (created, and left behind, empty, when released).

    The holder's record is written into the file for time-out messages; the lock itself dies
    with its process, so a crash never leaves a stale lease.
    """

    def timed_out(waited: float) -> StorageError:
        holder = None
        with contextlib.suppress(OSError, ValueError):
            holder = json.loads(path.read_bytes())
        return StorageError(
            f"{path}: timed out after {waited:g} s waiting for the lease held by "
            f"{_describe(holder)}"
        )

    with exclusive(path, timeout=timeout, on_timeout=timed_out) as fd:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _encode(_record(owner, None)), 0)
            yield Lease(str(path), owner)
        finally:
            os.ftruncate(fd, 0)  # empty = free; the file stays, as removing a lock file races


# -- many machines: an object with an expiry ------------------------------------------------


class ObjectLease(Lease):
    """A lease held as an object of `store`, renewed by a daemon thread while held."""

    def __init__(self, store: Store, key: str, owner: str, ttl: float) -> None:
        if not ttl > 0:
            raise ValueError(f"lease ttl must be positive, not {ttl!r}")
        super().__init__(store.join(key), owner)
        self._store, self._key, self._ttl = store, key, ttl
        self._record: dict[str, Any] = {}
        self._token = ""
        self._lost_reason: str | None = None
        self._released = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        if self._lost_reason is not None:
            return True
        # unrenewed past its expiry: someone may have taken it (a later renewal or the
        # conditional release proves it was not)
        return not self._released and time.time() > self._record["expires_at"]

    def check(self) -> None:
        if self.lost:
            reason = self._lost_reason or "not renewed before it expired"
            raise StorageError(f"{self.url}: lease of {self.owner} was lost while held ({reason})")

    def acquire(self, timeout: float) -> None:
        """Create the lease object, or take it over once expired; StorageError on time-out."""
        store, key = self._store, self._key
        deadline = time.monotonic() + timeout
        poll = min(1.0, max(0.02, self._ttl / 20))
        while True:
            record = _record(self.owner, self._ttl)
            token = store.create_versioned(key, _encode(record))
            if token is not None:
                return self._hold(record, token)
            current = store.read_versioned(key)
            if current is None:
                continue  # released between our create and our read: try again at once
            held = self._parse(current[0])
            overdue = time.time() - held["expires_at"]
            if overdue > 0:
                record = _record(self.owner, self._ttl)
                token = store.replace_versioned(key, _encode(record), current[1])
                if token is not None:
                    log.warning(
                        "taking over stale lease %s of %s (expired %.1f s ago)",
                        self.url,
                        held.get("owner"),
                        overdue,
                    )
                    return self._hold(record, token)
                continue  # another taker won: look at the new holder
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageError(
                    f"{self.url}: timed out after {timeout:g} s waiting for the lease held by "
                    f"{_describe(held)}"
                )
            time.sleep(min(left, poll * random.uniform(0.5, 1.5)))

    def release(self) -> None:
        """Stop renewing and delete the object if it is still ours (never another's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._lost_reason is not None:
            return
        try:
            current = self._store.read_versioned(self._key)
            if current is None or current[1] != self._token:
                self._lost_reason = "another holder took it over"
            elif self._store.delete_if(self._key, self._token):
                self._released = True
            else:
                self._lost_reason = "another holder took it over"
        except (StorageError, OSError) as exc:
            # not fatal: the work is done and the lease expires by itself
            log.warning("could not release lease %s (%s); it expires on its own", self.url, exc)

    def _hold(self, record: dict[str, Any], token: str) -> None:
        self._record, self._token = record, token
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"lease {self.url}", daemon=True
        )
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            record = {**self._record, "expires_at": time.time() + self._ttl}
            try:
                token = self._store.replace_versioned(self._key, _encode(record), self._token)
            except (StorageError, OSError) as exc:
                log.warning("could not renew lease %s (%s); retrying", self.url, exc)
                continue
            if token is None:
                self._lost_reason = "another holder took it over"
                log.error("lease %s of %s was taken over by another holder", self.url, self.owner)
                return
            self._record, self._token = record, token

    def _parse(self, data: bytes) -> dict[str, Any]:
        """The holder's record; StorageError if the object is not a lease (never guess)."""
        try:
            held = json.loads(data)
            if isinstance(held, dict) and isinstance(held.get("expires_at"), int | float):
                return held
        except ValueError:
            pass
        raise StorageError(f"{self.url}: not a lease record; delete it if no one holds it")


@contextlib.contextmanager
def object_lease(store: Store, key: str, owner: str, ttl: float, timeout: float) -> Iterator[Lease]:
    """Hold an ObjectLease; on a clean exit, StorageError if it was lost while held."""
    lease = ObjectLease(store, key, owner, ttl)
    lease.acquire(timeout)
    try:
        yield lease
    finally:
        lease.release()
    lease.check()  # after a clean exit only: the work may have overlapped another holder's
