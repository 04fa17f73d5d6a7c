"""Bad S3 settings from the CLI: one line naming the URL (never the secret), exit 1, bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.seaweed import SeaweedServer

ROOT = Path(__file__).resolve().parents[2]
WRONG_SECRET = "wr0ng-S3cret-Zq81x"  # distinctive, so its absence from the output means something


def mnistnn(env: dict[str, str], *args: str, timeout: float = 300) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


@pytest.fixture
def env(s3_env: SeaweedServer) -> dict[str, str]:
    return dict(os.environ)


def test_wrong_secret_missing_bucket_unreachable_endpoint(env: dict[str, str], s3_url: str) -> None:
    cases = {
        "wrong secret": ({"AWS_SECRET_ACCESS_KEY": WRONG_SECRET}, s3_url, "access denied"),
        "missing bucket": ({}, "s3://no-such-bucket-xyz/d", "bucket 'no-such-bucket-xyz' does"),
        "unreachable": ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, s3_url, "cannot reach"),
    }
    for name, (extra, url, message) in cases.items():
        code, output, seconds = mnistnn({**env, **extra}, "--data-dir", url, "models", "list")
        lines = [line for line in output.splitlines() if line.strip()]
        assert code == 1, (name, output)
        assert len(lines) == 1 and url in lines[0] and message in lines[0], (name, output)
        assert WRONG_SECRET not in output
        assert seconds < 30, (name, seconds)


def test_train_with_a_wrong_secret_fails_fast_and_never_prints_it(
    env: dict[str, str], s3_url: str, small_csvs: tuple[Path, Path]
) -> None:
    code, output, seconds = mnistnn(
        {**env, "AWS_SECRET_ACCESS_KEY": WRONG_SECRET},
        "--data-dir",
        f"{s3_url}/data",
        "train",
        "--train-csv",
        str(small_csvs[0]),
        "--test-csv",
        str(small_csvs[1]),
        "--epochs",
        "1",
    )
    assert code == 1, output
    assert "access denied" in output and s3_url in output
    assert WRONG_SECRET not in output
    assert seconds < 90, seconds  # a permanent error is not retried
