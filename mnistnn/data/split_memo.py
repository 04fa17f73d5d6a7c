"""How a batch splits into training and recent rows, remembered per machine by its content.

    $TMPDIR/mnistnn-cache/split-counts.json     {"<sha256>:<recent_fraction>": [rows, recent]}

The split is a pure function of a batch's rows and the fraction (`split.recent_mask`), and a
batch is named by the sha256 of its bytes, so a snapshot of 10,000 batches reads the Parquet of
the new ones only, not of every batch every night. Only a cache: deleting it costs one read of
each batch's Parquet.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from mnistnn.core import locations

_FILE = "split-counts.json"


def split_counts(
    batches: list[tuple[str, float]], count: Callable[[int], tuple[int, int]]
) -> list[tuple[int, int]]:
    """(rows, recent rows) of each (sha256, fraction); `count(i)` computes batch i's when it is
    not remembered, and what was computed is remembered."""
    path = locations.cache_dir() / _FILE
    memo: dict[str, list[int]] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(path.read_bytes())
        if isinstance(loaded, dict):
            memo = loaded
    results, added = [], False
    for index, (sha, fraction) in enumerate(batches):
        key = f"{sha}:{fraction!r}"
        known = memo.get(key)
        if not (isinstance(known, list) and len(known) == 2):
            known, added = list(count(index)), True
            memo[key] = known
        results.append((int(known[0]), int(known[1])))
    if added:
        with contextlib.suppress(OSError):  # only a cache
            locations.write_bytes(path, json.dumps(memo, separators=(",", ":")).encode())
    return results


__all__ = ["split_counts"]
