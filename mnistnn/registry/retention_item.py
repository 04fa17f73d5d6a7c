"""One thing retention may free (`mnistnn gc`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """One thing to free: a key (or a folder prefix ending '/') of the data directory, or a
    cache path; its size, object count and why it may go."""

    key: str
    size: int
    objects: int
    reason: str
    run: str | None = None  # the run key whose lock guards it


__all__ = ["Item"]
