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
QUICK_TEST_ROWS = 500


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the shared --quick flag."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--quick", action="store_true", help=f"a {QUICK_ROWS}-row slice: checks it runs"
    )
    return result


def quick_csvs(folder: Path) -> tuple[Path, Path]:
    """--quick's inputs: the first QUICK_ROWS training and QUICK_TEST_ROWS test rows, as .csv.gz."""
    from mnistnn.data.fast_csv import read_csv
    from tests.conftest import write_mnist_csv

    written = []
    for source, rows in ((TRAIN_CSV, QUICK_ROWS), (TEST_CSV, QUICK_TEST_ROWS)):
        pixels, labels = read_csv(source)
        written.append(
            write_mnist_csv(folder / f"quick-{source.name}", pixels[:rows], labels[:rows])
        )
    return written[0], written[1]


def child_env(prefect_home: Path, quick: bool) -> dict[str, str]:
    """The environment of a `mnistnn` child: its own Prefect home and, as a user's first command
    has, its own temporary server. --quick keeps a server it is given: `run_all --quick` gives
    every benchmark one (each start costs seconds, and quick figures are not the point)."""
    env = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MNISTNN_PREFECT_AUTODETECT": "0",
    }
    if not quick:
        env.pop("PREFECT_API_URL", None)
    return env


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
