"""Which failures the pipeline's tasks retry: only what may pass by itself."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest
from prefect import Task
from prefect.states import Failed

import flows
from flows.tasks import RETRIES, RETRYABLE, is_transient
from mnistnn.errors import DataError, NotFound, StorageError, StorageUnavailable


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (OSError("disk hiccup"), True),
        (TimeoutError("slow"), True),
        (StorageUnavailable("s3://b/p: cannot reach the S3 endpoint"), True),
        (StorageError("s3://b/p: access denied"), False),
        (NotFound("s3://b/p/x: no such key"), False),
        (DataError("x.csv: line 3: label 12 is not in 0..9"), False),
        (ValueError("bad"), False),
    ],
)
def test_only_transient_failures_are_retried(error: Exception, retried: bool) -> None:
    state: Any = Failed(data=error)
    assert is_transient(None, None, state) is retried  # type: ignore[arg-type]


def pipeline_tasks() -> list[Task[..., Any]]:
    """Every Prefect task defined in the flows package."""
    found: dict[str, Task[..., Any]] = {}
    for info in pkgutil.iter_modules(flows.__path__):
        module = importlib.import_module(f"flows.{info.name}")
        for value in vars(module).values():
            if isinstance(value, Task):
                found[value.name] = value
    return list(found.values())


def test_no_task_persists_a_result_and_every_one_backs_off() -> None:
    """No Prefect result storage to share: each task's durable output is in data_dir already.

    A retry on another worker re-derives its result from the store (checkpoints, Parquet, the
    registry); a task that persisted a Prefect result would need result storage configured
    from data_dir, which is why this is checked for every task.
    """
    tasks = pipeline_tasks()
    assert {"ingest", "train-epoch", "train-configuration", "score-input"} <= {
        t.name for t in tasks
    }
    delays = RETRYABLE["retry_delay_seconds"]
    assert delays == sorted(delays) and delays[-1] > delays[0]  # exponential, bounded
    assert sum(delays) * (1 + RETRYABLE["retry_jitter_factor"]) < 60
    for each in tasks:
        assert each.persist_result is False, each.name
        assert each.retries == RETRIES and each.retry_delay_seconds == delays, each.name
        assert each.retry_condition_fn is is_transient, each.name
