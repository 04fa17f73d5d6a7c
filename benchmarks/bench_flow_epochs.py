"""Seconds per training epoch of the `best` preset inside the flow against the same epochs alone.

The flow's figure is each epoch's `train_seconds` from `mnistnn train --preset best --json` (a
fresh process, as `bench_pipeline` runs it), once with every epoch scored (`--evaluate-every 1`)
and once with the preset's schedule; the reference is the same configuration trained in this
process with nothing else running (`bench_accuracy`'s loop), measured in the same run. The
first epoch of each is left out (it pays for warming the BLAS and the allocator).
`python -m benchmarks.bench_flow_epochs [--quick] [--epochs N]`
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_pipeline import home_of, run_pipeline
from benchmarks.common import TEST_CSV, TRAIN_CSV, parser, print_table, quick_csvs
from mnistnn import NeuralNetwork
from mnistnn.data.fast_csv import read_csv
from mnistnn.presets import resolve
from tests.prefect_home import new_prefect_home


def standalone_seconds(pixels: np.ndarray, labels: np.ndarray, epochs: int) -> list[float]:
    """Per-epoch training seconds of the best preset with no flow around it."""
    network = NeuralNetwork(resolve("best", {}).config)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        network.train_epoch(pixels, labels)
        seconds.append(time.perf_counter() - started)
    return seconds


def steady(seconds: list[float]) -> float:
    """The median epoch after the first (the least disturbed by other load on the machine)."""
    return statistics.median(seconds[1:] or seconds)


def main() -> None:
    arguments = parser(__doc__ or "")
    arguments.add_argument("--epochs", type=int, default=4)
    args = arguments.parse_args()
    epochs = 2 if args.quick else max(args.epochs, 2)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        train_csv, test_csv = quick_csvs(workdir) if args.quick else (TRAIN_CSV, TEST_CSV)
        pixels, labels = read_csv(train_csv)
        # epoch seconds only: the Prefect home starts migrated rather than migrating in a run
        new_prefect_home(home_of(workdir))
        flow_seconds = {}
        schedules = ("1", str(resolve("best", {}).evaluate_every))
        for every in schedules[:1] if args.quick else schedules:  # --quick: that it runs
            result, _, _ = run_pipeline(
                workdir,
                workdir / f"data-{every}",
                train_csv,
                test_csv,
                epochs,
                ("--preset", "best", "--evaluate-every", every),
                quick=args.quick,
            )
            flow_seconds[every] = steady([row["train_seconds"] for row in result["metrics"]])
        alone = steady(standalone_seconds(pixels, labels, epochs))
    rows = [("best preset alone (bench_accuracy's loop)", f"{alone:.3f} s", "reference")]
    for every, seconds in flow_seconds.items():
        rows.append(
            (
                f"inside the flow, --evaluate-every {every}",
                f"{seconds:.3f} s",
                f"{seconds / alone:.2f}x the standalone epoch (target <= 1.10x)",
            )
        )
    print_table(f"best preset, training seconds per epoch ({epochs} epochs)", rows)


if __name__ == "__main__":
    main()
