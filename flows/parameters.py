"""The training run's parameter checks, without Prefect: the flow calls them before any task,
and the CLI before it starts a server (so a bad value or a missing file costs no server start)."""

from __future__ import annotations

from mnistnn.core import locations
from mnistnn.data.inbox import check_settle_seconds
from mnistnn.data.ingest import check_fraction
from mnistnn.data.split import check_recent_fraction
from mnistnn.errors import DataError
from mnistnn.registry.promotion import check_min_delta
from mnistnn.runs.drift import check_threshold
from mnistnn.runs.steps import check_keep


def check_parameters(
    max_rejected_fraction: float,
    min_delta: float,
    keep_checkpoints: int,
    *,
    drift_threshold: float = 0.05,
    recent_fraction: float = 0.1,
    settle_seconds: float = 5.0,
) -> None:
    """Validate the run parameters before any work starts, with the library's own checks."""
    check_fraction(max_rejected_fraction)
    check_min_delta(min_delta)
    check_keep(keep_checkpoints)
    check_threshold(drift_threshold)
    check_recent_fraction(recent_fraction)
    check_settle_seconds(settle_seconds)


def check_inputs(*sources: str) -> None:
    """Each input (a path or an `s3://` URL) exists: one line naming the first that does not."""
    for source in sources:
        if not locations.exists(source):
            raise DataError(f"{source}: no such file or object")


__all__ = ["check_inputs", "check_parameters"]
