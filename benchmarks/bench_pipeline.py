"""The default 15-epoch `mnist-training` flow end to end on the full data, with its breakdown.

Runs `mnistnn train --json` in a fresh process (ephemeral Prefect, a temporary data folder and
Prefect home), so the wall time includes Python and Prefect start-up as a user sees it; the flow
reports the seconds of each stage, and the child's peak RSS is read from the OS. Beside it, the
reference program's time for the same epochs, estimated from one measured epoch of its loop with
per-sample CSV parsing. `python -m benchmarks.bench_pipeline [--quick]`.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import (
    QUICK_ROWS,
    TEST_CSV,
    TRAIN_CSV,
    child_env,
    parser,
    print_table,
    quick_csvs,
)
from tests.prefect_home import new_prefect_home


def home_of(workdir: Path) -> Path:
    """The Prefect home of every `run_pipeline` in `workdir` (its first run migrates the
    database, unless `new_prefect_home` made it a migrated copy)."""
    return workdir / "prefect-home"


def run_pipeline(
    workdir: Path,
    data_dir: Path,
    train_csv: Path,
    test_csv: Path,
    epochs: int,
    extra: Sequence[str] = (),
    quick: bool = False,
) -> tuple[dict, float, float]:
    """(flow result, wall seconds, peak RSS in MB) of one `mnistnn train` process; `extra` are
    more `mnistnn train` flags (`--preset best`, ...)."""
    env = child_env(home_of(workdir), quick)
    command = [
        str(Path(sys.executable).parent / "mnistnn"),
        "--data-dir",
        str(data_dir),
        "train",
        "--train-csv",
        str(train_csv),
        "--test-csv",
        str(test_csv),
        "--epochs",
        str(epochs),
        *extra,
        "--json",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    output = done.stdout
    wall = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return json.loads(output.strip().splitlines()[-1]), wall, peak_mb


def reference_seconds(train_csv: Path, rows: int) -> float:
    """The reference program's seconds per epoch: parse each CSV line, then train on it."""
    import gzip

    import numpy

    from mnistnn import NetworkConfig
    from mnistnn.model.network import initial_weights
    from tests.reference import ReferenceNetwork

    with gzip.open(train_csv, "rt") as handle:
        lines = [next(handle) for _ in range(rows)]
    net = ReferenceNetwork(784, 88, 10, 0.05, *initial_weights(NetworkConfig()))
    started = time.perf_counter()
    for record in lines:
        all_values = record.split(",")
        inputs = (numpy.asarray(all_values[1:], dtype=float) / 255.0 * 0.99) + 0.01
        targets = numpy.zeros(10) + 0.01
        targets[int(all_values[0])] = 1.0
        net.train(inputs, targets)
    return (time.perf_counter() - started) * 60_000 / rows


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    epochs = 2 if args.quick else 15
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        train_csv, test_csv = quick_csvs(workdir) if args.quick else (TRAIN_CSV, TEST_CSV)
        # The first run with a new Prefect home also creates its database: reported apart.
        # --quick only checks that the benchmark runs: a copy of a migrated database instead.
        first_wall = None
        if args.quick:
            new_prefect_home(home_of(workdir))
        else:
            _, first_wall, _ = run_pipeline(workdir, workdir / "first", train_csv, test_csv, epochs)
        result, wall, peak_mb = run_pipeline(
            workdir, workdir / "data", train_csv, test_csv, epochs, quick=args.quick
        )
    rows_used = QUICK_ROWS if args.quick else 60_000
    per_epoch = reference_seconds(TRAIN_CSV, 500 if args.quick else 5000)
    reference = per_epoch * rows_used / 60_000 * epochs
    timings = result["timings"]
    in_flow = sum(timings.values())
    rows = [
        (
            f"whole pipeline, {epochs} epochs, {rows_used} rows (wall)",
            f"{wall:.1f} s",
            f"reference program {reference:.1f} s ({reference / wall:.2f}x)",
        ),
        ("  Python + Prefect start-up and shutdown", f"{wall - in_flow:.1f} s", ""),
        ("  ingest (train and test in parallel)", f"{timings['ingest']:.1f} s", ""),
        ("  train + evaluate (overlapped)", f"{timings['train_and_evaluate']:.1f} s", ""),
        (
            "    of which training",
            f"{sum(m['train_seconds'] for m in result['metrics']):.1f} s",
            "",
        ),
        (
            "    of which evaluation",
            f"{sum(m['eval_seconds'] for m in result['metrics']):.1f} s",
            "",
        ),
        ("  finish + register", f"{timings['register']:.1f} s", ""),
        ("  publish (figures, report, artifacts)", f"{timings.get('publish', 0.0):.1f} s", ""),
        (
            "first run with a new Prefect home (wall)",
            "not run" if first_wall is None else f"{first_wall:.1f} s",
            "--quick: its home had a migrated copy" if first_wall is None else "creates it",
        ),
        ("peak RSS of the pipeline process", f"{peak_mb:.0f} MB", "target <= 1024 MB"),
        ("final accuracy / confident", f"{result['accuracy']:.4f}", f"{result['confident']:.4f}"),
    ]
    print_table("default pipeline end to end", rows)


if __name__ == "__main__":
    main()
