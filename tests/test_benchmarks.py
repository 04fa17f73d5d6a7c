"""`make bench-quick` runs: every benchmark on a tiny slice (figures are not checked here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _user_env() -> dict[str, str]:
    """The environment a user runs `make bench-quick` in: without the suite's settle time of 0
    (tests/conftest.py), which once hid a benchmark that scored a file it had just written."""
    hidden = ("MNISTNN_SETTLE_SECONDS", "PREFECT_API_URL")  # run_all starts its own server
    return {key: value for key, value in os.environ.items() if key not in hidden}


@pytest.mark.slow
def test_quick_benchmarks_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=_user_env(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.split("=== all benchmarks in one table", 1)[1]
    for title in (
        "train seconds per epoch",
        "two-thread engine, seconds per epoch",
        "ingest of the train CSV",
        "augment seconds",
        "default pipeline end to end",
        "best preset, training seconds per epoch",
        "sweep throughput",
        "batch scoring against mnistnn predict",
        "a simulated year",
    ):
        assert title in summary, title
