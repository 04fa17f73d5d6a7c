"""Inputs refused as a whole: one line of reason, remembered by content so they are not read again.

A refused input of the scoring inbox (over a limit, binary, a labelled file, or anything that
went wrong while reading it, MemoryError included) is recorded as `<sha16>.refused.json` beside
the predictions: later runs refuse the same bytes at once, without reading them, until the bytes
change (a new sha256) or the limits in force change (they are part of the record).
"""

from __future__ import annotations

import contextlib
import json
from typing import Final

import pyarrow as pa

from mnistnn import limits
from mnistnn.core import locations
from mnistnn.core.locations import Location
from mnistnn.errors import DataError, StorageError, one_line
from mnistnn.inert import shown

#: What one input may raise that is that input's failure, not the run's: everything but the
#: store's own errors (an unreachable store is retried by the caller, not blamed on the input).
REFUSALS: Final = (DataError, MemoryError, RecursionError, ValueError, pa.ArrowException)


def reason(name: str, exc: BaseException) -> str:
    """One line naming the input (escaped) and why it was refused."""
    if isinstance(exc, DataError) and not isinstance(exc, StorageError):
        return one_line(exc)
    if isinstance(exc, MemoryError):
        return f"{shown(name)}: out of memory while reading it (see the limits in mnistnn.limits)"
    return f"{shown(name)}: could not be read ({type(exc).__name__}: {shown(one_line(exc))})"


def record(where: Location, sha256: str, why: str) -> None:
    """Remember the refusal of this content under the limits in force (best effort)."""
    body = {"sha256": sha256, "reason": why, "limits": limits.describe()}
    with contextlib.suppress(OSError, StorageError):  # else the next run simply refuses it again
        locations.write_bytes(where, (json.dumps(body, indent=2) + "\n").encode("utf-8"))


def stored(where: Location, sha256: str) -> str | None:
    """The reason this content was refused before, under the same limits; else None."""
    try:
        data = json.loads(locations.read_bytes(where))
    except (OSError, StorageError, ValueError):
        return None
    if (
        not isinstance(data, dict)
        or data.get("sha256") != sha256
        or data.get("limits") != limits.describe()
        or not isinstance(data.get("reason"), str)
    ):
        return None
    return str(data["reason"])


__all__ = ["REFUSALS", "reason", "record", "stored"]
