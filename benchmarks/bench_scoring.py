"""Batch scoring (`mnistnn.predict.batch`) against `mnistnn predict --csv`: same CSV, same run.

    10,000 rows   the test set's pixels as a Kaggle CSV (with header): `score_input` (hash,
                  parse in blocks, score, write Parquet + review queue), the flow's task
                  function around it (registry load + logging, no Prefect), and
                  `predict.predict_csv` (the same streamed reader, score), best of 3 each
    1,000,000     the same rows tiled 100 times into one temporary CSV (written once), scored
                  by `score_input` in a fresh process that reads its own peak RSS (VmHWM) after
                  loading everything and again at the end: the growth is what streaming costs

The model is the reference network after one epoch on the bundled train set (`--quick`: a
2,000-row slice, 2,000 and 20,000 rows). Prints each figure beside its reference; asserts
nothing about time. `python -m benchmarks.bench_scoring [--quick]`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common
from benchmarks.common import QUICK_ROWS, TEST_CSV, TRAIN_CSV

TILES = 100
HEADER = ",".join(f"pixel{i}" for i in range(784))


def vm_hwm_mb() -> float:
    """This process's peak resident set so far, from /proc (MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_csv(pixels, path: Path, tiles: int = 1) -> Path:
    """A header, then the rows `tiles` times (the text of one copy is built once)."""
    body = ("\n".join(",".join(map(str, row)) for row in pixels.tolist()) + "\n").encode()
    with open(path, "wb") as handle:
        handle.write((HEADER + "\n").encode())
        for _ in range(tiles):
            handle.write(body)
    return path


def score_once(network, csv: Path, out: Path):
    """identify + score_input into a fresh output folder; returns (seconds, result)."""
    from mnistnn.predict import batch
    from mnistnn.predict.inputs import discover, identify

    shutil.rmtree(out, ignore_errors=True)
    # settle 0: the file was written a moment ago, and whole (the 5 s default waits for writers)
    [item] = [i for i in discover(csv.parent, settle_seconds=0).inputs if i.name == csv.name]
    started = time.perf_counter()
    result = batch.score_input(
        item,
        identify(item),
        batch.PinnedModel("v0001", network),
        None,
        predictions_dir=out / "predictions",
        review_dir=out / "review",
    )
    return time.perf_counter() - started, result


def child(weights: str, csv: str, out: str) -> None:
    """Score the big CSV in this fresh process and print one JSON line of figures."""
    from mnistnn.model.checkpoint import load_weights
    from mnistnn.predict import batch, inputs  # noqa: F401  (imported before the baseline)

    network = load_weights(weights)
    network.query(__import__("numpy").zeros((1, 784), dtype="uint8"))
    before = vm_hwm_mb()
    seconds, result = score_once(network, Path(csv), Path(out))
    print(
        json.dumps(
            {"seconds": seconds, "rows": result.scored, "before": before, "after": vm_hwm_mb()}
        )
    )


def task_function_seconds(network, csv: Path, workdir: Path) -> float:
    """The flow's `score_task` body (registry load, identify, score, log) without Prefect."""
    from flows import scoring_tasks
    from flows.scoring_tasks import PinnedModels
    from mnistnn.predict.inputs import discover
    from mnistnn.registry.store import ModelRegistry

    models = workdir / "models"
    if not models.exists():
        ModelRegistry(models).register(
            network, metrics={"accuracy": 0.9}, test_sha256="t" * 64, train_sha256="s" * 64
        )
    # settle 0: the file was written a moment ago, and whole (the 5 s default waits for writers)
    [item] = [i for i in discover(csv.parent, settle_seconds=0).inputs if i.name == csv.name]
    out = workdir / "task-out"
    shutil.rmtree(out, ignore_errors=True)
    scoring_tasks._load.cache_clear()
    started = time.perf_counter()
    scoring_tasks.score_task.fn(
        item,
        PinnedModels(str(models), "v0001", None, "benchmark"),
        str(out / "predictions"),
        str(out / "review"),
        0.6,
        65_536,
        None,
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list and args_list[0] == "--child":
        child(*args_list[1:4])
        return 0
    args = common.parser(__doc__.splitlines()[0]).parse_args(args_list)
    from mnistnn.data.fast_csv import read_csv
    from mnistnn.model.checkpoint import save_weights
    from mnistnn.model.network import NeuralNetwork
    from mnistnn.predict.predict import predict_csv

    train_pixels, train_labels = read_csv(TRAIN_CSV)
    test_pixels, _ = read_csv(TEST_CSV)
    small = QUICK_ROWS if args.quick else len(test_pixels)
    if args.quick:
        train_pixels, train_labels = train_pixels[:QUICK_ROWS], train_labels[:QUICK_ROWS]
    network = NeuralNetwork()
    network.train_epoch(train_pixels, train_labels)
    tiles = 10 if args.quick else TILES

    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as scratch:
        work = Path(scratch)
        (work / "small").mkdir()
        (work / "big").mkdir()
        small_csv = write_csv(test_pixels[:small], work / "small" / "digits.csv")
        ours = [score_once(network, small_csv, work / "out")[0] for _ in range(3)]
        _, result = score_once(network, small_csv, work / "out")
        task = min(task_function_seconds(network, small_csv, work) for _ in range(3))
        theirs = common.best_of(3, lambda: predict_csv(network, small_csv))
        best = min(ours)

        big_csv = write_csv(test_pixels[:small], work / "big" / "tiled.csv", tiles=tiles)
        weights = work / "weights.npz"
        save_weights(weights, network)
        size_mb = big_csv.stat().st_size / 1e6
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(common.ROOT), os.environ.get("PYTHONPATH")])
            ),
        }
        output = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_scoring",
                "--child",
                str(weights),
                str(big_csv),
                str(work / "big-out"),
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            cwd=common.ROOT,
        ).stdout
        big = json.loads(output.strip().splitlines()[-1])

    small_rate = small / best
    big_rate = big["rows"] / big["seconds"]
    growth = big["after"] - big["before"]
    print(
        f"{small:,} rows: {result.review_rows:,} to review at 0.6, mean confidence "
        f"{result.mean_confidence:.4f}; big CSV {size_mb:,.0f} MB"
    )
    common.print_table(
        "batch scoring against mnistnn predict",
        [
            (
                f"score_input, {small:,} rows (best of 3)",
                f"{best:.3f} s",
                f"{best / theirs:.2f} of predict_csv",
            ),
            (f"flow task function, {small:,} rows", f"{task:.3f} s", "target < 0.5 s (full size)"),
            (f"predict_csv, {small:,} rows (best of 3)", f"{theirs:.3f} s", "reference"),
            (
                f"score_input, {big['rows']:,} rows streamed",
                f"{big['seconds']:.2f} s",
                f"{big_rate:,.0f} rows/s",
            ),
            (
                "throughput ratio (small rate / big rate)",
                f"{small_rate / big_rate:.2f}x",
                "target < 2x",
            ),
            ("peak RSS growth while streaming", f"{growth:.0f} MB", "target < 300 MB"),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
