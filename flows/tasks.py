"""Tasks shared by the flows: a few lines over `mnistnn` each, returning paths or typed records.

Retries are for what may pass by itself (I/O errors, time-outs); a data, configuration or
programming error fails at once, since retrying it would only fail again.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from mnistnn.data.ingest import IngestSummary
from mnistnn.data.remote import ingest_location as ingest_csv
from mnistnn.errors import MnistnnError, StorageUnavailable

#: Bounded exponential back-off: 1 + 2 + 4 + 8 + 16 = 31 s of waiting on average, each delay
#: jittered (at most +20%, so at most 37 s) so that the tasks of several workers do not knock on a
#: recovering store in step. Long enough to ride out a restart of the object store or a lost
#: connection; short enough that a store which stays away fails the task after six attempts
#: (each attempt adds boto3's own 3 tries: milliseconds when refused, up to 3 x 5 s of connect
#: time-outs on an endpoint that never answers).
RETRIES = 5
RETRY_DELAY_SECONDS = [1.0 * 2**attempt for attempt in range(RETRIES)]
RETRY_JITTER_FACTOR = 0.2


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger, or a plain logger when called outside a run (`task.fn(...)`)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("flows")


def log_attempt(
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Log which attempt of its flow run this is, when it is not the first (a re-run after a
    crash, automatic or by hand: Prefect's run count); returns `logger`."""
    from prefect.runtime import flow_run

    attempt = int(flow_run.run_count or 1)
    if attempt > 1:
        logger.warning(
            "attempt %d of flow run %s: run again after it crashed or failed; it resumes from "
            "what the earlier attempts left (checkpoints, registry)",
            attempt,
            flow_run.get_id(),
        )
    return logger


def is_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry OSError and time-outs; never our own errors, ValueError or TypeError."""
    try:
        state.result(raise_on_failure=True)
    except StorageUnavailable:  # the store may be back: an OSError as well as our own error
        return True
    except MnistnnError:
        return False
    except (OSError, TimeoutError):
        return True
    except BaseException:
        return False
    return False


#: Options of every pipeline task: retried only when the failure may be transient. No Prefect
#: result is persisted: each task writes its durable output into data_dir itself (checkpoints,
#: Parquet, the registry) and returns a small record, so a retry on any worker re-derives it from
#: the store; there is no Prefect result storage to share between workers.
RETRYABLE: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAY_SECONDS,
    "retry_jitter_factor": RETRY_JITTER_FACTOR,
    "retry_condition_fn": is_transient,
    "cache_policy": NO_CACHE,
    "persist_result": False,
}


@task(name="ingest", task_run_name="ingest {role}", **RETRYABLE)
def ingest_task(
    role: str, csv_path: str, processed_dir: str, max_rejected_fraction: float
) -> IngestSummary:
    """Validate one MNIST CSV into content-addressed Parquet (reused when unchanged)."""
    summary = ingest_csv(csv_path, processed_dir, max_rejected_fraction=max_rejected_fraction)
    logger = run_logger()
    verb = "reused" if summary.reused else "ingested"
    logger.info(
        "%s %s: %d rows accepted, %d rejected (sha256 %s)",
        verb,
        summary.source_name,
        summary.rows_accepted,
        summary.rows_rejected,
        summary.sha256[:16],
    )
    return summary


__all__ = ["RETRYABLE", "ingest_task", "is_transient", "run_logger"]
