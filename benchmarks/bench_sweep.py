"""Sweep throughput: configurations per minute on 2 Dask workers against 1, same grid, same run.

Runs the `mnist-sweep` flow in-process on worker threads (the compiled loop releases the GIL),
each time into a fresh data folder so nothing is reused.
`python -m benchmarks.bench_sweep [--quick]`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import TEST_CSV, TRAIN_CSV, parser, print_table, quick_csvs


def timed_sweep(workers: int, train_csv: Path, test_csv: Path, hidden: list[int]) -> float:
    from flows.sweep import run_sweep

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        run_sweep(
            workers=workers,
            hidden_nodes=hidden,
            learning_rates=[0.05, 0.1],
            epochs=[1],
            train_csv=str(train_csv),
            test_csv=str(test_csv),
            data_dir=folder,
        )
        return time.perf_counter() - started


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not args.quick:  # a server of its own (--quick keeps one it is given: benchmarks.common)
        os.environ.pop("PREFECT_API_URL", None)
    from tests.prefect_home import seeded_test_harness

    hidden = [20, 40] if args.quick else [50, 100, 150, 200]
    configs = len(hidden) * 2
    given = os.environ.get("PREFECT_API_URL")
    server = contextlib.nullcontext() if given else seeded_test_harness(server_startup_timeout=60)
    with tempfile.TemporaryDirectory() as folder, server:
        train_csv, test_csv = quick_csvs(Path(folder)) if args.quick else (TRAIN_CSV, TEST_CSV)
        two = timed_sweep(2, train_csv, test_csv, hidden)
        # --quick only checks that it runs: the 2-worker sweep, the one that uses the cluster
        one = None if args.quick else timed_sweep(1, train_csv, test_csv, hidden)
    rows = [
        (
            f"{configs} configs x 1 epoch, 1 worker",
            "not run" if one is None else f"{configs / one * 60:.1f} /min",
            "--quick" if one is None else f"{one:.1f} s",
        ),
        (
            f"{configs} configs x 1 epoch, 2 workers",
            f"{configs / two * 60:.1f} /min",
            f"{two:.1f} s" + ("" if one is None else f", {one / two:.2f}x"),
        ),
    ]
    print_table("sweep throughput (configurations per minute)", rows)


if __name__ == "__main__":
    main()
