"""`mnist-sweep`: train a grid of configurations in parallel on Dask and chart the results.

Each configuration is one task that trains through the same content-addressed run folders as
`mnist-training` (a configuration trained before is reused). Tasks run on `DaskTaskRunner`:
a local cluster sized to the machine by default, or an existing cluster (`dask_address`).

Trade-off: Dask worker *processes* that run Prefect tasks talk to the Prefect API. Against a real
server (PREFECT_API_URL set) that is cheap; in Prefect's ephemeral mode every worker process would
start its own temporary API server (seconds each, and runs that never reach your UI). So without
PREFECT_API_URL the local cluster uses worker *threads* instead: the compiled training loop
releases the GIL, so threads still train on every core.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect_dask.task_runners import DaskTaskRunner

from flows.crashes import crashed_if_terminated
from flows.tasks import RETRYABLE, ingest_task, run_logger
from mnistnn.config import DataPaths, NetworkConfig
from mnistnn.core.locations import is_url
from mnistnn.data.ingest import IngestSummary
from mnistnn.errors import ConfigError
from mnistnn.registry.from_run import register_run
from mnistnn.report import sweep as sweep_report
from mnistnn.runs import sweep
from mnistnn.runs.folders import RunFolder
from mnistnn.runs.records import DataLineage, RunLineage

TABLE_KEY = "mnist-sweep-results"
REPORT_KEY = "mnist-sweep-report"


@task(name="train-configuration", task_run_name="train {label}", **RETRYABLE)
def train_configuration_task(
    label: str,
    config: dict[str, Any],
    epochs: int,
    runs_dir: str,
    train: IngestSummary,
    test: IngestSummary,
) -> list[dict[str, Any]]:
    """Train (or reuse) one configuration for the largest epoch count of the sweep."""
    return sweep.train_configuration(
        NetworkConfig.from_dict(config),
        epochs,
        runs_dir,
        train.parquet,
        test.parquet,
        train.sha256,
        test.sha256,
    )


@task(name="publish-sweep", task_run_name="publish sweep report", **RETRYABLE)
def publish_sweep_task(points: list[dict[str, Any]], seconds: float, report_dir: str) -> str:
    """Publish the results table and the charts; save the report beside the runs."""
    rows = [sweep.SweepPoint(**point) for point in points]
    text = sweep_report.markdown(rows, sweep_report.charts(rows), seconds)
    create_table_artifact(key=TABLE_KEY, table=points, description="One row per configuration")
    create_markdown_artifact(key=REPORT_KEY, markdown=text, description="Sweep charts")
    return str(sweep.write_report(report_dir, text))


@task(name="register-best", task_run_name="register best model", **RETRYABLE)
def register_best_task(
    run_dir: str, models_dir: str, test: IngestSummary, lineage: RunLineage, min_delta: float
) -> dict[str, Any]:
    """Register the best configuration's model; the registry decides on promotion."""
    decision = register_run(
        RunFolder(run_dir), models_dir, test.parquet, lineage, min_delta=min_delta
    )
    run_logger().info("model registry: %s", decision["reason"])
    return decision


@flow(name="mnist-sweep", log_prints=False, on_failure=[crashed_if_terminated])
def sweep_pipeline(
    hidden_nodes: list[int] | None = None,
    learning_rates: list[float] | None = None,
    epochs: list[int] | None = None,
    batch_sizes: list[int] | None = None,
    dtypes: list[Literal["float64", "float32"]] | None = None,
    seeds: list[int] | None = None,
    init: Literal["legacy", "default"] = "legacy",
    train_csv: str = "data/raw/mnist_train.csv.gz",
    test_csv: str = "data/raw/mnist_test.csv.gz",
    data_dir: str = "data",
    register_best: bool = False,
    min_delta: float = 0.0,
) -> dict[str, Any]:
    """Train every combination of the lists (defaults: the book's 88 nodes, lr 0.05, 5 epochs).

    `register_best` hands the best configuration's final model (largest epoch count) to the
    registry, where the usual rule decides whether it replaces the champion.
    """
    started = time.perf_counter()
    epoch_counts = epochs or [5]
    if min(epoch_counts) < 1:
        raise ConfigError(f"epochs must all be >= 1, got {epoch_counts}")
    configs = sweep.grid(
        hidden_nodes or [88],
        learning_rates or [0.05],
        batch_sizes or [1],
        dtypes or ["float64"],
        seeds or [0],
        init,
    )
    paths = DataPaths.at(data_dir if is_url(data_dir) else Path(data_dir).resolve())
    train_future = ingest_task.submit("train", train_csv, str(paths.processed), 0.0)
    test_future = ingest_task.submit("test", test_csv, str(paths.processed), 0.0)
    train, test = train_future.result(), test_future.result()
    futures = [
        train_configuration_task.submit(
            _label(config), config.to_dict(), max(epoch_counts), str(paths.runs), train, test
        )
        for config in configs
    ]
    points = []
    for config, future in zip(configs, futures, strict=True):
        metrics = future.result()
        points += sweep.points_for(config, metrics, epoch_counts)
        run_logger().info("%s: accuracy %.4f", _label(config), metrics[-1]["accuracy"])
    seconds = time.perf_counter() - started
    table = [point.to_dict() for point in points]
    report = publish_sweep_task(table, seconds, str(paths.runs))
    best = max(points, key=lambda point: point.accuracy)
    decision = None
    if register_best:
        finals = [point for point in points if point.epochs == max(epoch_counts)]
        chosen = max(finals, key=lambda point: point.accuracy)
        lineage = RunLineage(DataLineage.of(train, "train"), DataLineage.of(test, "test"))
        decision = register_best_task(chosen.run_dir, str(paths.models), test, lineage, min_delta)
    return {
        "points": table,
        "best": best.to_dict(),
        "report": report,
        "seconds": seconds,
        "decision": decision,
    }


def _label(config: NetworkConfig) -> str:
    return (
        f"hidden {config.hidden_nodes} lr {config.learning_rate} batch {config.batch_size} "
        f"{config.dtype} seed {config.seed}"
    )


def task_runner(dask_address: str | None = None, workers: int | None = None) -> DaskTaskRunner:
    """An existing cluster, or a local one: processes with a real API server, else threads."""
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    processes = bool(os.environ.get("PREFECT_API_URL"))
    count = workers or os.cpu_count() or 1
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": count if processes else 1,
            "threads_per_worker": 1 if processes else count,
            "processes": processes,
            # a free port for the scheduler's HTTP routes: with None they still take 8787, and a
            # second cluster on the machine then warns and moves (an error where warnings are)
            "dashboard_address": ":0",
        }
    )


def run_sweep(
    dask_address: str | None = None, workers: int | None = None, **parameters: Any
) -> dict[str, Any]:
    """Run `mnist-sweep` on the chosen Dask task runner."""
    runner: Any = task_runner(dask_address, workers)
    result: dict[str, Any] = sweep_pipeline.with_options(task_runner=runner)(**parameters)
    return result
