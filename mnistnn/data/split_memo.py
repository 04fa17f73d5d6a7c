"""How a batch splits into training and recent rows, remembered per machine by its content.

    $TMPDIR/mnistnn-cache/split-counts/<sha16 of the processed folder>.txt
        a line a batch: <sha256> <fraction> <rows> <recent>

The split is a pure function of a batch's rows and the fraction (`split.recent_mask`), and a
batch is named by the sha256 of its bytes, so a snapshot of 10,000 batches reads the Parquet of
the new ones only, not of every batch every night. New counts are *appended* (one short write
in append mode, whole even with several writers), so a night that adds one batch writes one
line, not the memo again (a JSON memo rewritten and fsynced every night took 14 ms at 2,000
batches). A line that does not parse (a writer killed mid-line) is skipped. Only a cache:
deleting it costs one read of each batch's Parquet. One memo per processed folder, so it grows
with that data's batches only, not with every batch this machine has seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from mnistnn.core import locations

_FOLDER = "split-counts"
_SHA = re.compile(r"[0-9a-f]{64}")


def split_counts(
    batches: list[tuple[str, float]], count: Callable[[int], tuple[int, int]], scope: str = ""
) -> list[tuple[int, int]]:
    """(rows, recent rows) of each (sha256, fraction); `count(i)` computes batch i's when it is
    not remembered, and what was computed is remembered (in the memo of `scope`, the processed
    folder the batches are in)."""
    digest = hashlib.sha256(scope.encode()).hexdigest()[:16]
    path = locations.cache_dir() / _FOLDER / f"{digest}.txt"
    memo = _read(path)
    results, added = [], []
    for index, (sha, fraction) in enumerate(batches):
        known = memo.get((sha, repr(fraction)))
        if known is None:
            known = count(index)
            added.append(f"{sha} {fraction!r} {known[0]} {known[1]}\n")
        results.append(known)
    if added:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:  # one write(2) in append mode: other writers' lines never land inside it
                os.write(descriptor, "".join(added).encode("ascii"))
            finally:
                os.close(descriptor)
    return results


def _read(path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    memo: dict[tuple[str, str], tuple[int, int]] = {}
    try:
        lines = path.read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return memo
    for line in lines:
        parts = line.split(" ")
        if (
            len(parts) == 4
            and _SHA.fullmatch(parts[0])
            and parts[2].isdigit()
            and parts[3].isdigit()
        ):
            memo[(parts[0], parts[1])] = (int(parts[2]), int(parts[3]))
    return memo


__all__ = ["split_counts"]
