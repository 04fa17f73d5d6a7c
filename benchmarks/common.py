"""Helpers shared by the benchmarks: timing, the bundled data, and the printed table."""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CSV = ROOT / "data" / "raw" / "mnist_train.csv.gz"
TEST_CSV = ROOT / "data" / "raw" / "mnist_test.csv.gz"
QUICK_ROWS = 2000


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the shared --quick flag."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--quick", action="store_true", help=f"a {QUICK_ROWS}-row slice: checks it runs"
    )
    return result


def best_of(repeats: int, function: Callable[[], object]) -> float:
    """Best wall time in seconds of `repeats` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def machine() -> str:
    """One line naming the machine the figures came from, and the BLAS kernel numpy runs."""
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, BLAS {blas()}"


def blas() -> str:
    """The BLAS library and the CPU kernel it chose (OPENBLAS_CORETYPE can force an old one)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return (
                f"{pool.get('internal_api')} {pool.get('architecture')} x{pool.get('num_threads')}"
            )
    return "none found"


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    """Print rows of (what, figure, ratio/comment) as an aligned table."""
    print(f"\n{title}  [{machine()}]")
    width = max(len(row[0]) for row in rows)
    for what, figure, comment in rows:
        print(f"  {what:<{width}}  {figure:>12}  {comment}")


def start_bucket(folder: Path) -> tuple[Any, str]:
    """A SeaweedFS server of its own under `folder`, the AWS variables set for it in this process,
    and a new bucket on it: (server, "s3://bucket"). The caller stops the server. Raises
    ImportError or RuntimeError when no server can start (a benchmark then skips its S3 rows)."""
    import boto3

    from tests.seaweed import ACCESS_KEY, REGION, SECRET_KEY, start_seaweed

    folder.mkdir()
    server = start_seaweed(folder)
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=server.endpoint,
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
        )
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        boto3.client("s3").create_bucket(Bucket=bucket)
    except BaseException:
        server.stop()
        raise
    return server, f"s3://{bucket}"
