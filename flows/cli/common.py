"""What the flow-running commands share: Prefect's defaults and a pre-flight store check."""

from __future__ import annotations

import argparse
import logging
import os

from mnistnn.config import DataPaths
from mnistnn.errors import MnistnnError


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def prefect_defaults() -> None:
    """Offline-friendly Prefect settings, unless the user chose otherwise; known errors are
    logged by Prefect without their traceback (the CLI prints them as one line at the end)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server needs more than Prefect's 20 s to start on a loaded 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownErrorsWithoutTraceback) for f in logger.filters):
            logger.addFilter(_KnownErrorsWithoutTraceback())


class _KnownErrorsWithoutTraceback(logging.Filter):
    """Drop the traceback from log records of our own errors; keep it for real bugs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MnistnnError):
            record.exc_info = None
            record.exc_text = None
        return True


def check_store(paths: DataPaths) -> None:
    """One request to the data_dir's object store before Prefect starts: unreachable, wrong
    credentials or a missing bucket fail here in one line, not after every task's retries."""
    if paths.is_remote:
        paths.store.exists("models/registry.json")
