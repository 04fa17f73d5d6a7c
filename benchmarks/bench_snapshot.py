"""Read a training snapshot (the base file plus 20 inbox batches of 3,000 rows) against the base.

Both in one process: the base Parquet file alone (`read_parquet`), and the snapshot through
`load_snapshot` (each member's Parquet, the recent-test slice of each batch by row hash, one
contiguous array), the in-process cache cleared before every call. Also times building the
snapshot (hashing every batch row once). Prints a small table; asserts nothing about time.

    python -m benchmarks.bench_snapshot            # the 60,000-row train file + 20 x 3,000 rows
    python -m benchmarks.bench_snapshot --quick    # a 2,000-row base + 20 x 100 rows
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.common import QUICK_ROWS, TRAIN_CSV

BATCHES = 20
BATCH_ROWS = 3000
QUICK_BATCH_ROWS = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (best of)")
    return parser.parse_args(argv)


def write_csv(path: Path, pixels: np.ndarray, labels: np.ndarray) -> Path:
    rows = np.column_stack([labels, pixels]).astype(np.int64)
    np.savetxt(path, rows, fmt="%d", delimiter=",")
    return path


def run(quick: bool, repeat: int) -> list[tuple[str, float]]:
    from mnistnn.config import DataPaths
    from mnistnn.data import snapshot as snapshots
    from mnistnn.data.fast_csv import read_csv
    from mnistnn.data.ingest import ingest_csv
    from mnistnn.data.parquet import read_parquet

    pixels, labels = read_csv(TRAIN_CSV)
    base_rows = QUICK_ROWS if quick else len(labels)
    batch_rows = QUICK_BATCH_ROWS if quick else BATCH_ROWS
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as scratch:
        paths = DataPaths(Path(scratch) / "data")
        base_csv = (
            write_csv(Path(scratch) / "base.csv", pixels[:base_rows], labels[:base_rows])
            if quick
            else TRAIN_CSV
        )
        base = ingest_csv(base_csv, paths.processed)
        members = []
        for index in range(BATCHES):
            picked = rng.choice(len(labels), size=batch_rows, replace=False)
            csv = write_csv(
                Path(scratch) / f"batch-{index:02d}.csv", pixels[picked], labels[picked]
            )
            summary = ingest_csv(csv, paths.processed)
            members.append((summary.sha256, summary.parquet))

        started = time.perf_counter()
        snap = snapshots.build_snapshot(
            base.sha256, base.rows_accepted, base.parquet, members, paths
        )
        build = time.perf_counter() - started
        assert snap.manifest is not None

        def read_base() -> object:
            return read_parquet(base.parquet)

        def read_snapshot() -> object:
            snapshots._load_cached.cache_clear()
            return snapshots.load_snapshot(snap.manifest)

        base_seconds = common.best_of(repeat, read_base)
        snapshot_seconds = common.best_of(repeat, read_snapshot)
        cached = common.best_of(repeat, lambda: snapshots.load_snapshot(snap.manifest))
        print(
            f"base {base.rows_accepted} rows + {BATCHES} batches x {batch_rows} rows: "
            f"{snap.train_rows} training rows, {snap.recent_rows} recent test rows"
        )
    return [
        ("read the base file alone", base_seconds),
        (f"read the snapshot (base + {BATCHES} batches)", snapshot_seconds),
        ("read the snapshot again (cached in process)", cached),
        ("build the snapshot (hash every batch row)", build),
    ]


def print_table(results: list[tuple[str, float]]) -> None:
    """Seconds, and each time as a multiple of reading the base file alone."""
    base = results[0][1]
    rows = [
        (name, f"{seconds:.3f} s", f"{seconds / base:.2f}x the base alone")
        for name, seconds in results
    ]
    common.print_table("snapshot read (target: well under 1 s)", rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print_table(run(args.quick, max(1, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
