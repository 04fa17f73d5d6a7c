"""The inbox ledger's format (`snapshots/inbox.json`): one compare-and-swap object, compact JSON.

    {"schema": 1, "batches": {sha256: record}, "names": {inbox name: sha256}}

Each record holds the batch's first name, every name seen, status, rows, reason, first-seen time,
Parquet name and label counts (`inbox._ingest`). Compact, key-sorted JSON (about 480 bytes a
batch, measured at 1,000 batches): the same bytes for the same ledger, so a merge that changes
nothing writes nothing; at 10,000 batches it is about 4.8 MB, parsed in a few tens of
milliseconds (3-6 ms at 1,000 here), and a rescan with nothing new does not read it at all
(`inbox_memo`). Earlier, indented ledgers read the same.
"""

from __future__ import annotations

import json
from typing import Any

from mnistnn.errors import DataError

LEDGER_SCHEMA = 1


class Merger:
    """The compare-and-swap step: put this scan's records and names into the current ledger.

    `known` (the bytes the scan read, and their parse) spares parsing those bytes again when
    the step finds the ledger unchanged (once: a rerun after a conflict parses what it gets);
    `ledger` is the ledger last merged, so the caller needs no parse of what was written.
    """

    def __init__(
        self,
        where: str,
        present: dict[str, str],
        found: dict[str, dict[str, Any]],
        won: set[str],
        known: tuple[tuple[bytes, str] | None, dict[str, Any]] | None = None,
    ) -> None:
        self.where, self.present, self.found, self.won = where, present, found, won
        self.known = known
        self.ledger: dict[str, Any] = {}

    def __call__(self, current: bytes | None) -> bytes:
        read, parsed = self.known if self.known is not None else (None, None)
        self.known = None
        if parsed is not None and read is not None and current is not None and read[0] == current:
            ledger = parsed
        else:
            ledger = parse_ledger(self.where, None if current is None else (current, ""))
        self.ledger = ledger
        present, found = self.present, self.found
        self.won.clear()
        for name in sorted(present, key=lambda n: (present[n], n)):
            digest = present[name]
            record = ledger["batches"].get(digest)
            if record is None:
                record = json.loads(json.dumps(found[digest]))  # a copy: the step may rerun
                previous = ledger["names"].get(name)
                if previous is not None and previous != digest:
                    record["replaces"] = previous
                ledger["batches"][digest] = record
                self.won.add(digest)
            if name not in record["names"]:
                record["names"].append(name)
            ledger["names"][name] = digest
        return ledger_bytes(ledger)


def recorded(ledger: dict[str, Any], present: dict[str, str]) -> bool:
    """Whether the ledger already holds every present name with its content."""
    return all(
        ledger["names"].get(name) == digest and name in ledger["batches"][digest]["names"]
        for name, digest in present.items()
    )


def parse_ledger(where: str, stored: tuple[bytes, str] | None) -> dict[str, Any]:
    """The ledger, or an empty one; a corrupt ledger is an error (it decides what is new)."""
    if stored is None:
        return {"schema": LEDGER_SCHEMA, "batches": {}, "names": {}}
    try:
        data = json.loads(stored[0].decode("utf-8"))
    except ValueError as exc:
        raise DataError(f"{where}: the inbox ledger is not valid JSON ({exc})") from exc
    if (
        not isinstance(data, dict)
        or data.get("schema") != LEDGER_SCHEMA
        or not isinstance(data.get("batches"), dict)
        or not isinstance(data.get("names"), dict)
    ):
        raise DataError(f"{where}: not an inbox ledger of schema {LEDGER_SCHEMA}")
    return data


def ledger_bytes(ledger: dict[str, Any]) -> bytes:
    """Compact, key-sorted JSON: the same bytes for the same ledger, so no change writes nothing
    (compact: at 10,000 batches it is read and parsed in a few tens of milliseconds)."""
    text = json.dumps(ledger, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return (text + "\n").encode()


__all__ = ["LEDGER_SCHEMA", "Merger", "ledger_bytes", "parse_ledger", "recorded"]
