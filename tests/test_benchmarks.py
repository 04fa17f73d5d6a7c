"""The benchmarks run: every one that trains no flow, on a tiny slice (figures not checked).

`make bench-quick` runs them all. The four that run the Prefect flows (`bench_pipeline`,
`bench_flow_epochs`, `bench_cli`, `bench_sweep`) are left out here: together they cost about
90 CPU seconds, and on 2 cores the suite is bound by its CPU, while the flows they run are
the ones the e2e tests run (tests/e2e/).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FLOW_BENCHMARKS = "bench_pipeline,bench_flow_epochs,bench_cli,bench_sweep"


def _user_env() -> dict[str, str]:
    """The environment a user runs `make bench-quick` in: without the suite's settle time of 0
    (tests/conftest.py), which once hid a benchmark that scored a file it had just written."""
    hidden = ("MNISTNN_SETTLE_SECONDS", "PREFECT_API_URL")
    return {key: value for key, value in os.environ.items() if key not in hidden}


@pytest.mark.slow
def test_quick_benchmarks_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--quick", "--skip", FLOW_BENCHMARKS],
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
        "batch scoring against mnistnn predict",
        "a simulated year",
    ):
        assert title in summary, title
    assert "default pipeline end to end" not in summary  # skipped, as asked


def test_an_unknown_benchmark_to_skip_is_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--quick", "--skip", "bench_nothing"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "--skip: no benchmark benchmarks.bench_nothing"
