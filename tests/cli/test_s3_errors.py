"""Bad S3 settings from the CLI: one line naming the URL (never the secret), exit 1, bounded.

`train` and `sweep` ask the store once before Prefect starts, so a bad setting fails in seconds
with that one line, whichever command met it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.seaweed import SeaweedServer, free_ports

ROOT = Path(__file__).resolve().parents[2]
WRONG_SECRET = "wr0ng-S3cret-Zq81x"  # distinctive, so its absence from the output means something


def mnistnn(env: dict[str, str], *args: str, timeout: float = 300) -> tuple[int, str, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


@pytest.fixture
def env(s3_env: SeaweedServer) -> dict[str, str]:
    return dict(os.environ)


def test_wrong_secret_missing_bucket_unreachable_endpoint(
    env: dict[str, str], s3_url: str, small_csvs: tuple[Path, Path]
) -> None:
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    cases = {
        "wrong secret": ({"AWS_SECRET_ACCESS_KEY": WRONG_SECRET}, s3_url, "access denied"),
        "missing bucket": ({}, "s3://no-such-bucket-xyz/d", "bucket 'no-such-bucket-xyz' does"),
        "unreachable": ({"AWS_ENDPOINT_URL": dead}, s3_url, f"cannot reach the S3 endpoint {dead}"),
    }
    csvs = ("--train-csv", str(small_csvs[0]), "--test-csv", str(small_csvs[1]))
    commands = {
        "models list": ("models", "list"),
        "train": ("train", *csvs, "--epochs", "1"),
        "sweep": ("sweep", "--hidden", "10", "--epochs", "1", *csvs),
    }
    timings = {}
    for name, (extra, url, message) in cases.items():
        for command, args in commands.items():
            if command == "sweep" and name != "unreachable":
                continue  # the same check as train's; one case shows sweep makes it too
            code, out, err, seconds = mnistnn({**env, **extra}, "--data-dir", url, *args)
            what = (name, command, out, err)
            assert code == 1, what
            assert err.count("\n") == 1 and err.startswith("mnistnn: error: " + url), what
            assert message in err, what
            assert WRONG_SECRET not in out + err, what
            # No Prefect server and no task retries (those alone would take 31 s or more); the
            # bound is generous because starting Python here takes 2 s idle, 20 s under load.
            assert seconds < 60, (what, seconds)
            timings[name, command] = round(seconds, 1)
    print("wall seconds to give up:", timings)
