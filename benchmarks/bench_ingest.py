"""Time `mnistnn.data.ingest` on the bundled train file against `pandas.read_csv(header=None)`.

Measures, in one process and on the same file: a fresh ingest (into a temporary processed
folder), a re-ingest of the unchanged file (hash only), reading the Parquet back to X, y, and
pandas reading the CSV. Prints a small table; asserts nothing about time.

    python -m benchmarks.bench_ingest            # the 60,000-row train file
    python -m benchmarks.bench_ingest --quick    # a 2,000-row slice, in seconds
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import QUICK_ROWS, TRAIN_CSV


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=TRAIN_CSV, help="CSV to ingest (.csv/.gz)")
    parser.add_argument("--repeat", type=int, default=3, help="read-back repetitions (best of)")
    return parser.parse_args(argv)


def write_slice(source: Path, rows: int, folder: Path) -> Path:
    """The first `rows` lines of `source` as a new .csv.gz (a different file, so a fresh hash)."""
    opener = gzip.open if source.name.endswith(".gz") else open
    with opener(source, "rt") as handle:
        lines = [line for _, line in zip(range(rows), handle, strict=False)]
    target = folder / f"{source.name.split('.')[0]}_{rows}.csv.gz"
    target.write_bytes(gzip.compress("".join(lines).encode(), compresslevel=6))
    return target


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def run(source: Path, repeat: int) -> list[tuple[str, float]]:
    """All measurements on `source`, in the order they are printed."""
    import pandas as pd

    from mnistnn.data.ingest import ingest_csv
    from mnistnn.data.parquet import read_parquet

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as processed:
        fresh, summary = timed(lambda: ingest_csv(source, processed))
        again, reused = timed(lambda: ingest_csv(source, processed))
        if not reused.reused:
            print("warning: the re-ingest converted again instead of reusing", file=sys.stderr)
        reads = [timed(lambda: read_parquet(summary.parquet))[0] for _ in range(max(1, repeat))]
    pandas_seconds, frame = timed(lambda: pd.read_csv(source, header=None))
    print(
        f"{source.name}: {summary.rows_read} rows ({summary.rows_rejected} rejected), "
        f"{frame.shape[1]} columns"
    )
    return [
        ("ingest (fresh, validate + Parquet)", fresh),
        ("re-ingest (unchanged, hash only)", again),
        ("read-back, first call", reads[0]),
        (f"read-back, best of {len(reads)}", min(reads)),
        (f"read-back, median of {len(reads)}", statistics.median(reads)),
        ("pandas.read_csv(header=None)", pandas_seconds),
    ]


def print_table(results: list[tuple[str, float]]) -> None:
    """Seconds, and each time as a fraction of pandas' time on the same file."""
    pandas_seconds = results[-1][1]
    rows = [
        (name, f"{seconds:.3f} s", f"{seconds / pandas_seconds:.2f} of pandas")
        for name, seconds in results
    ]
    common.print_table("ingest of the train CSV against pandas", rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-slice-") as scratch:
        source = write_slice(args.source, QUICK_ROWS, Path(scratch)) if args.quick else args.source
        print_table(run(source, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
