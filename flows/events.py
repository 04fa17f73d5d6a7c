"""Prefect events of mnistnn: names, resources, and the one place that emits them.

    mnistnn.batch.ingested    a new batch was accepted (payload: file, rows, drift, ...)
    mnistnn.batch.refused     a new batch was refused (payload: file, reason)
    mnistnn.data.drift        an accepted batch was flagged by the drift check
    mnistnn.model.registered  a run registered a new model version
    mnistnn.model.promoted    a version became champion (by a run's rule, or by hand)
    mnistnn.model.rolled-back the previous champion is champion again
    mnistnn.promotion.waiting a promotion waits for a person

A batch event's resource is the batch, `mnistnn.batch.<sha256>`, so the Event Feed groups all
that happened to one file and the deployment trigger matches `mnistnn.batch.*`; a model event's
is the version it is about, `mnistnn.model.<version>` (payload: old and new version, both
accuracies, the reason), so the feed filtered on `mnistnn.model.*` is the registry's history.
Events reach a
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
MODEL_REGISTERED = "mnistnn.model.registered"
MODEL_PROMOTED = "mnistnn.model.promoted"
MODEL_ROLLED_BACK = "mnistnn.model.rolled-back"
PROMOTION_WAITING = "mnistnn.promotion.waiting"
RESOURCE_PREFIX = "mnistnn.batch."
MODEL_PREFIX = "mnistnn.model."
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


def model_resource(version: str) -> dict[str, str]:
    """A registered model version as a Prefect resource."""
    return {
        "prefect.resource.id": f"{MODEL_PREFIX}{version}",
        "prefect.resource.name": version,
        "mnistnn.kind": "model-version",
    }


def champion_change(
    event: str,
    old: tuple[str | None, float | None],
    new: tuple[str, float],
    reason: str,
    by: str,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(event, resource, payload) of a champion change: old and new (version, accuracy)."""
    payload = {
        "old_version": old[0],
        "old_accuracy": old[1],
        "new_version": new[0],
        "new_accuracy": new[1],
        "reason": reason,
        "by": by,
    }
    return event, model_resource(new[0]), payload


def decision_events(decision: dict[str, Any]) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """The events of a run's registry decision (`PromotionDecision.to_dict()`): registered, and
    promoted when it became champion. A re-run that registered nothing new sends nothing."""
    if str(decision.get("reason", "")).startswith("already registered"):
        return []
    version, accuracy = decision["version"], decision["accuracy"]
    old = (decision.get("champion_version"), decision.get("champion_accuracy"))
    payload = {
        "version": version,
        "accuracy": accuracy,
        "champion_version": old[0],
        "champion_accuracy": old[1],
        "promoted": decision["promoted"],
        "reason": decision["reason"],
    }
    planned = [(MODEL_REGISTERED, model_resource(version), payload)]
    if decision["promoted"]:
        reason = decision["reason"]
        planned.append(champion_change(MODEL_PROMOTED, old, (version, accuracy), reason, "run"))
    return planned


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


def announce(planned: list[tuple[str, dict[str, str], dict[str, Any]]]) -> int:
    """Queue each (event, resource, payload) from inside a flow run (its events are sent when
    the run ends); how many were queued."""
    return sum(emit(event, resource, payload) for event, resource, payload in planned)


def flush(timeout: float = FLUSH_TIMEOUT) -> None:
    """Wait until the queued events are sent (before a one-shot command exits)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=timeout, at_exit=False)


__all__ = [
    "BATCH_INGESTED",
    "BATCH_REFUSED",
    "DATA_DRIFT",
    "MODEL_PROMOTED",
    "MODEL_REGISTERED",
    "MODEL_ROLLED_BACK",
    "NO_SERVER",
    "PROMOTION_WAITING",
    "announce",
    "batch_resource",
    "champion_change",
    "count_names",
    "decision_events",
    "emit",
    "flush",
    "model_resource",
    "server_available",
]
