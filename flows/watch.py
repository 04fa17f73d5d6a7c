"""`mnist-watch`: the inbox sensor. Ingest what is new in the labelled inbox, emit its events.

One pass: `scan_inbox` validates every new file of the inbox into Parquet (or refuses it); each
newly accepted batch is checked for drift against the champion and the base training data; then
the events go out (see `flows.events`): `mnistnn.batch.ingested` for each accepted batch (which
triggers the `nightly-retrain` deployment), `mnistnn.data.drift` for each flagged one, and
`mnistnn.batch.refused` for each refused one. A batch is announced once, in the pass that first
sees it; a pass with nothing new sends nothing.

`mnistnn watch` runs the plain function (`watch_once`) once or every `--interval` seconds; the
`watch-incoming` deployment runs the flow on a one-minute schedule on the work pool.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows import events
from flows.crashes import crashed_if_terminated
from flows.parameters import declared
from flows.tasks import RETRYABLE, run_logger
from mnistnn.config import DataPaths
from mnistnn.core import locations
from mnistnn.core.locations import Location
from mnistnn.data.inbox import Batch, scan_inbox
from mnistnn.data.parquet import read_parquet
from mnistnn.data.remote import ingest_location
from mnistnn.parameters import WatchParameters, parse
from mnistnn.registry.store import ModelRegistry
from mnistnn.runs.drift import BatchDrift, InkStats, check_batch, ink_stats

DEFAULT_DRIFT_THRESHOLD = 0.05
DEFAULT_SETTLE_SECONDS = 5.0


@dataclass(frozen=True)
class PlannedEvent:
    """One event to send: its name, the batch resource and the payload."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class WatchPass:
    """What one pass over the inbox found, and the events it sends (`sent` once delivered)."""

    incoming: str
    new: list[dict[str, Any]]
    events: list[PlannedEvent]
    sent_to: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    def lines(self, with_events: bool = True) -> list[str]:
        """What the CLI prints: one line per new batch, then what happened to the events."""
        if not self.new:
            return [f"nothing new in {self.incoming}"]
        shown = []
        for batch in self.new:
            if batch["status"] == "accepted":
                drift = batch.get("drift") or {}
                flag = f"DRIFT ({drift.get('drift_reason')})" if drift.get("drift") else "no drift"
                shown.append(
                    f"accepted {batch['file']}: {batch['accepted']} rows, "
                    f"{batch['rejected']} rejected (sha256 {batch['sha256'][:16]}); {flag}"
                )
            else:
                shown.append(f"refused {batch['file']}: {batch['reason']}")
        names = events.count_names(planned.event for planned in self.events)
        if not with_events:
            return shown
        if self.sent_to:
            shown.append(f"sent {len(self.events)} event(s) to {self.sent_to} ({names})")
        elif self.events:
            shown.append(f"{events.NO_SERVER} ({names})")
        return shown + self.notes


def scan(
    incoming: str | os.PathLike[str],
    paths: DataPaths,
    *,
    train_csv: str | os.PathLike[str] | None = None,
    max_rejected_fraction: float = 0.0,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD,
) -> WatchPass:
    """Ingest what is new in `incoming`, check each accepted batch for drift, plan the events."""
    given = locations.as_location(incoming)
    folder = given.absolute() if isinstance(given, Path) else given
    batches = scan_inbox(
        folder,
        paths,
        max_rejected_fraction=max_rejected_fraction,
        settle_seconds=settle_seconds,
        only_new=True,
    )
    accepted = [batch for batch in batches if batch.status == "accepted"]
    drifts = _check_drift(accepted, paths, train_csv, drift_threshold) if accepted else {}
    new: list[dict[str, Any]] = []
    planned: list[PlannedEvent] = []
    for batch in batches:
        drift = drifts.get(batch.sha256)
        new.append({**batch.to_dict(), "drift": _drift_dict(drift)})
        planned.extend(_events_of(batch, drift, folder))
    return WatchPass(incoming=str(folder), new=new, events=planned)


def send(result: WatchPass) -> WatchPass:
    """Emit the pass's events when a Prefect server answers; say so when none does."""
    if not result.events:
        return result
    url = events.server_available()
    if url is None:
        run_logger().warning("%s (%d event(s))", events.NO_SERVER, len(result.events))
        return result
    delivered = [
        planned
        for planned in result.events
        if events.emit(planned.event, planned.resource, planned.payload)
    ]
    events.flush()
    if len(delivered) < len(result.events):
        note = f"{len(result.events) - len(delivered)} event(s) could not be queued"
        return dataclasses.replace(result, sent_to=url, notes=[*result.notes, note])
    return dataclasses.replace(result, sent_to=url)


def watch_once(
    incoming: str | os.PathLike[str],
    paths: DataPaths,
    **options: Any,
) -> WatchPass:
    """One pass: `scan` then `send` (the `mnistnn watch` command)."""
    return send(scan(incoming, paths, **options))


@task(name="scan-inbox", task_run_name="scan inbox", **RETRYABLE)
def scan_task(
    incoming_dir: str,
    data_dir: str,
    train_csv: str,
    max_rejected_fraction: float,
    settle_seconds: float,
    drift_threshold: float,
) -> WatchPass:
    """Ingest the new batches of the inbox and check them for drift (events not sent yet)."""
    result = scan(
        incoming_dir,
        DataPaths.at(data_dir),
        train_csv=train_csv,
        max_rejected_fraction=max_rejected_fraction,
        settle_seconds=settle_seconds,
        drift_threshold=drift_threshold,
    )
    for line in result.lines(with_events=False):
        run_logger().info(line)
    return result


@flow(
    name="mnist-watch",
    log_prints=False,
    on_failure=[crashed_if_terminated],
    validate_parameters=False,
)
@declared(WatchParameters)
def watch_inbox(**values: Any) -> dict[str, Any]:
    """One pass over the labelled inbox (default `<data_dir>/incoming`): ingest, check, announce.

    Each newly accepted batch emits `mnistnn.batch.ingested`, which triggers `nightly-retrain`;
    a batch whose drift check fails also emits `mnistnn.data.drift`. The parameters are declared
    in `mnistnn.parameters` (`WatchParameters`).
    """
    params = parse(WatchParameters, values)
    data, inbox = params.data, params.inbox
    incoming = data.incoming_dir or str(DataPaths.at(data.data_dir).incoming)
    train_csv = data.train_csv or str(DataPaths.at(data.data_dir).train_csv)
    result = send(
        scan_task(
            incoming,
            data.data_dir,
            train_csv,
            inbox.max_rejected_fraction,
            inbox.settle_seconds,
            inbox.drift_threshold,
        )
    )
    if result.events and result.sent_to:
        run_logger().info("sent %d event(s) to %s", len(result.events), result.sent_to)
    return result.to_dict()


# -- internals -----------------------------------------------------------------------------------
def _events_of(batch: Batch, drift: BatchDrift | None, incoming: Location) -> list[PlannedEvent]:
    resource = events.batch_resource(batch.sha256, batch.file)
    if batch.status != "accepted":
        payload = {
            "file": batch.file,
            "sha256": batch.sha256,
            "reason": batch.reason,
            "rows": batch.accepted,
            "rejected": batch.rejected,
            "incoming": str(incoming),
        }
        return [PlannedEvent(events.BATCH_REFUSED, resource, payload)]
    flagged = drift is not None and drift.drift
    check = _drift_dict(drift)
    ingested = {
        "file": batch.file,
        "rows": batch.accepted,
        "drift": flagged,
        "drift_reason": None if drift is None else drift.drift_reason,
        "sha256": batch.sha256,
        "rejected": batch.rejected,
        "parquet": batch.parquet,
        "incoming": str(incoming),
    }
    planned = [PlannedEvent(events.BATCH_INGESTED, resource, ingested)]
    if flagged:
        payload = {
            "file": batch.file,
            "rows": batch.accepted,
            "sha256": batch.sha256,
            **(check or {}),
        }
        planned.append(PlannedEvent(events.DATA_DRIFT, resource, payload))
    return planned


def _check_drift(
    batches: list[Batch],
    paths: DataPaths,
    train_csv: str | os.PathLike[str] | None,
    threshold: float,
) -> dict[str, BatchDrift]:
    """Each batch against the champion (if any) and the ink statistics of the base data."""
    registry = ModelRegistry(paths.models)
    champion = registry.champion()
    network = None if champion is None else registry.load(champion.version)
    base = _base_stats(train_csv or paths.train_csv, paths)
    results = {}
    for batch in batches:
        assert batch.parquet is not None  # accepted batches have their Parquet
        results[batch.sha256] = check_batch(
            batch.parquet,
            network,
            None if champion is None else champion.accuracy,
            base,
            threshold=threshold,
            sha256=batch.sha256,
        )
    return results


def _drift_dict(drift: BatchDrift | None) -> dict[str, Any] | None:
    return None if drift is None else dataclasses.asdict(drift)


_BASE_STATS: dict[str, InkStats] = {}


def _base_stats(train_csv: str | os.PathLike[str], paths: DataPaths) -> InkStats:
    """Ink statistics of the base training data, computed once per content and process."""
    summary = ingest_location(train_csv, paths.processed)
    if summary.sha256 not in _BASE_STATS:
        _BASE_STATS[summary.sha256] = ink_stats(*read_parquet(summary.parquet))
    return _BASE_STATS[summary.sha256]


__all__ = ["PlannedEvent", "WatchPass", "scan", "send", "watch_inbox", "watch_once"]
