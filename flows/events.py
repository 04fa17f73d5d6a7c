"""Prefect events of the labelled inbox: names, resources, and the one place that emits them.

    mnistnn.batch.ingested   a new batch was accepted (payload: file, rows, drift, ...)
    mnistnn.batch.refused    a new batch was refused (payload: file, reason)
    mnistnn.data.drift       an accepted batch was flagged by the drift check

Each event's resource is the batch, `mnistnn.batch.<sha256>`, so the Event Feed groups all that
happened to one file and the deployment trigger matches `mnistnn.batch.*`. Events reach a
running server through its events websocket; without one (PREFECT_API_URL unset, or the server
down) nothing is sent and the caller says so: the inbox is still ingested.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

BATCH_INGESTED = "mnistnn.batch.ingested"
BATCH_REFUSED = "mnistnn.batch.refused"
DATA_DRIFT = "mnistnn.data.drift"
RESOURCE_PREFIX = "mnistnn.batch."
NO_SERVER = "no Prefect server: events not sent"
FLUSH_TIMEOUT = 30.0

log = logging.getLogger(__name__)


def batch_resource(sha256: str, file: str) -> dict[str, str]:
    """The batch as a Prefect resource: id by content, named by its file."""
    return {
        "prefect.resource.id": f"{RESOURCE_PREFIX}{sha256}",
        "prefect.resource.name": file,
        "mnistnn.kind": "labelled-batch",
    }


def count_names(names: Iterable[str]) -> str:
    """Each event name once with its count, first seen first: "200 x mnistnn.batch.ingested,
    3 x mnistnn.data.drift" (a line that does not grow with the number of batches)."""
    counts = Counter(names)
    return ", ".join(f"{count} x {name}" for name, count in counts.items())


def server_available() -> str | None:
    """The API URL when a Prefect server answers there, else None (so events would be lost)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return None
    with get_client(sync_client=True) as client:
        failure = client.api_healthcheck()
    if failure is not None:
        log.warning("Prefect server at %s does not answer (%s)", url, failure)
        return None
    return str(url)


def emit(event: str, resource: dict[str, str], payload: dict[str, Any]) -> bool:
    """Queue one event for the server; True when it was queued (see `flush`)."""
    from prefect.events import emit_event

    return emit_event(event=event, resource=resource, payload=payload) is not None


def flush(timeout: float = FLUSH_TIMEOUT) -> None:
    """Wait until the queued events are sent (before a one-shot command exits)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=timeout, at_exit=False)


__all__ = [
    "BATCH_INGESTED",
    "BATCH_REFUSED",
    "DATA_DRIFT",
    "NO_SERVER",
    "batch_resource",
    "count_names",
    "emit",
    "flush",
    "server_available",
]
