"""What the inbox added to a run: its snapshot, every batch with its drift check, recent data.

`assess_batches` runs the drift rules of `mnistnn.runs.drift` on each accepted batch, scoring
the champion only on rows it never trained on; `NewData` carries the result to the flow, the
`--json` answer and the report.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from mnistnn.core import locations
from mnistnn.data.inbox import ACCEPTED, Batch
from mnistnn.data.parquet import load_arrays, read_parquet
from mnistnn.data.snapshot import Snapshot, read_manifest
from mnistnn.errors import DataError
from mnistnn.model.network import NeuralNetwork
from mnistnn.runs.drift import DEFAULT_THRESHOLD, BatchDrift, check_threshold, drift_of, ink_stats


@dataclass(frozen=True)
class NewData:
    """What the inbox added to a run: the snapshot, every batch with its drift check, and the
    recent test data (the held-out slices of the batches) as a Parquet file."""

    snapshot: Snapshot
    batches: tuple[Batch, ...]
    drifts: dict[str, BatchDrift]
    recent_parquet: str | None
    recent_sha256: str | None
    recent_rows: int
    champion_version: str | None

    @property
    def accepted(self) -> list[Batch]:
        return [batch for batch in self.batches if batch.status == ACCEPTED]

    @property
    def refused(self) -> list[Batch]:
        return [batch for batch in self.batches if batch.status != ACCEPTED]

    def batch_rows(self) -> list[dict[str, Any]]:
        """One row per batch (accepted and refused): the `--json`, report and table fields."""
        members = {member.sha256: member for member in self.snapshot.batches}
        rows = []
        for batch in self.batches:
            check = self.drifts.get(batch.sha256)
            member = members.get(batch.sha256)
            rows.append(
                {
                    "file": batch.file,
                    "names": list(batch.names),
                    "sha256": batch.sha256,
                    "status": batch.status,
                    "reason": batch.reason,
                    "accepted": batch.accepted,
                    "rejected": batch.rejected,
                    "train_rows": None if member is None else member.train_rows,
                    "recent_rows": None if member is None else member.recent_rows,
                    "first_seen": batch.first_seen,
                    "replaces": batch.replaces,
                    "champion_accuracy": None if check is None else check.champion_accuracy,
                    "champion_scored_rows": None if check is None else check.rows,
                    "test_accuracy": None if check is None else check.test_accuracy,
                    "drift": bool(check is not None and check.drift),
                    "drift_reason": None if check is None else check.drift_reason,
                    "label_histogram": None if check is None else check.label_histogram,
                    "mean_intensity": None if check is None else check.mean_intensity,
                    "dark_fraction": None if check is None else check.dark_fraction,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The `snapshot` of `mnistnn train --json` (and of the run's lineage)."""
        return {
            "sha256": self.snapshot.sha256,
            "manifest": self.snapshot.manifest,
            "base": self.snapshot.base.to_dict(),
            "train_rows": self.snapshot.train_rows,
            "recent_fraction": self.snapshot.recent_fraction,
            "recent": {
                "rows": self.recent_rows,
                "sha256": self.recent_sha256,
                "parquet": self.recent_parquet,
            },
            "champion": self.champion_version,
            "batches": self.batch_rows(),
        }

    def headline(self) -> str | None:
        """`Learned from 2 new batches (5,400 rows, +9.0% on the base data); 1 refused.`"""
        if not self.batches:
            return None
        added = self.snapshot.train_rows - self.snapshot.base.train_rows
        share = added / max(1, self.snapshot.base.train_rows)
        flagged = sum(1 for check in self.drifts.values() if check.drift)
        count = len(self.accepted)
        parts = [
            f"Learned from {count} inbox batch{'es' if count != 1 else ''}"
            f" ({added:,} training rows, +{100 * share:.1f}% on the base data; "
            f"{self.recent_rows:,} rows held out as recent test data)"
        ]
        if flagged:
            parts.append(f"{flagged} flagged as drift")
        if self.refused:
            parts.append(f"{len(self.refused)} refused")
        return "; ".join(parts) + "."


def assess_batches(
    snapshot: Snapshot,
    batches: list[Batch],
    champion: NeuralNetwork | None,
    champion_test_accuracy: float | None,
    champion_members: set[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, BatchDrift]:
    """The drift check of each accepted batch the champion has not trained on, by sha256.

    A batch in `champion_members` (the sha256s of the snapshot it was trained on) was checked
    when it was new, so it is not read again: a night's check costs what is new, not the
    history. With no champion every accepted batch is new.
    """
    limit = check_threshold(threshold)
    results: dict[str, BatchDrift] = {}
    if not any(
        batch.status == ACCEPTED
        and batch.parquet is not None
        and batch.sha256 not in champion_members
        for batch in batches
    ):
        return results  # nothing to compare: the base data is not even read
    base = ink_stats(*load_arrays(locations.join(snapshot.processed, snapshot.base.parquet)))
    for batch in batches:
        if batch.status != ACCEPTED or batch.parquet is None or batch.sha256 in champion_members:
            continue
        pixels, labels = read_parquet(batch.parquet)
        stats = ink_stats(pixels, labels)
        scored_pixels, scored_labels = pixels, labels
        check = drift_of(
            batch.sha256,
            scored_pixels,
            scored_labels,
            champion,
            champion_test_accuracy,
            base,
            threshold=limit,
            stats=stats,
        )
        results[batch.sha256] = dataclasses.replace(check, rows=len(scored_labels))
    return results


def members_of(snapshots_dir: str | os.PathLike[str], train_sha256: str) -> set[str]:
    """The sha256s of the files a model was trained on (its snapshot's members, or the file)."""
    path = locations.join(snapshots_dir, f"{train_sha256[:16]}.json")
    if not locations.exists(path):
        return {train_sha256}
    try:
        return {member.sha256 for member in read_manifest(path).members}
    except DataError:
        return {train_sha256}


__all__ = ["NewData", "assess_batches", "members_of"]
