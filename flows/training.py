"""`mnist-training`: ingest -> train epochs with checkpoints -> evaluate -> register -> publish.

Every step is its own retryable task that finds its own output on disk first, so a retry, a re-run
after a crash (even SIGKILL) or a second run of a finished configuration resumes from the last valid
checkpoint and redoes nothing else. Tasks exchange paths and small dicts, never weight arrays.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from prefect import flow, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from flows.tasks import RETRYABLE, ingest_task, lineage_of, run_logger
from mnistnn import presets
from mnistnn.config import DataPaths, NetworkConfig
from mnistnn.errors import ConfigError
from mnistnn.runs import steps as training
from mnistnn.runs.folders import RunFolder, open_run, run_folder, run_lock

PROGRESS_KEY = "mnist-training-progress"


@task(name="train-epoch", task_run_name="train epoch {epoch}", **RETRYABLE)
def train_epoch_task(
    run_dir: str, epoch: int, config: dict[str, Any], train_parquet: str, lineage: dict[str, Any]
) -> dict[str, Any]:
    """Train one epoch from the previous checkpoint and write checkpoint `epoch`."""
    outcome = training.train_epoch(
        RunFolder(Path(run_dir)), epoch, NetworkConfig.from_dict(config), train_parquet, lineage
    )
    return outcome.to_dict()


@task(name="evaluate-epoch", task_run_name="evaluate epoch {epoch}", **RETRYABLE)
def evaluate_epoch_task(run_dir: str, epoch: int, test_parquet: str) -> dict[str, Any]:
    """Score checkpoint `epoch` on the test set (accuracy, confident, MSE, confusion)."""
    return training.evaluate_epoch(RunFolder(Path(run_dir)), epoch, test_parquet)


@task(name="finish-run", **RETRYABLE)
def finish_run_task(run_dir: str, epochs: int) -> list[dict[str, Any]]:
    """Write metrics.json and the final weights of the run."""
    return training.finish_run(RunFolder(Path(run_dir)), epochs)


@task(name="register-model", **RETRYABLE)
def register_task(
    run_dir: str, models_dir: str, test_parquet: str, lineage: dict[str, Any], min_delta: float
) -> dict[str, Any]:
    """Hand the final model to the registry; it becomes champion only if it is better."""
    from mnistnn.registry.from_run import register_run

    decision = register_run(
        RunFolder(Path(run_dir)),
        models_dir,
        test_parquet,
        lineage,
        min_delta=min_delta,
        flow_run_id=flow_run.get_id(),
    )
    run_logger().info("model registry: %s", decision["reason"])
    return decision


@task(name="publish", **RETRYABLE)
def publish_task(
    run_dir: str, test_parquet: str, lineage: dict[str, Any], decision: dict[str, Any] | None
) -> str:
    """Publish the epoch table, the report and a link to the run as Prefect artifacts."""
    from flows.publish import publish_run

    return publish_run(RunFolder(Path(run_dir)), test_parquet, lineage, decision)


def check_parameters(
    epochs: int, max_rejected_fraction: float, min_delta: float, keep_checkpoints: int = 0
) -> None:
    """The checks Prefect's type validation cannot do, before any work starts."""
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    if keep_checkpoints < 0:
        raise ConfigError(f"keep_checkpoints must be >= 0 (0 keeps all), got {keep_checkpoints}")
    if not 0.0 <= max_rejected_fraction <= 1.0:
        raise ConfigError(f"max_rejected_fraction must be in 0..1, got {max_rejected_fraction}")
    if not -1.0 < min_delta < 1.0:
        raise ConfigError(f"min_delta must be in (-1, 1), got {min_delta}")


@flow(name="mnist-training", log_prints=False)
def train_pipeline(
    train_csv: str = "data/raw/mnist_train.csv.gz",
    test_csv: str = "data/raw/mnist_test.csv.gz",
    hidden_nodes: int = 88,
    learning_rate: float = 0.05,
    epochs: int = 15,
    seed: int = 0,
    init: Literal["legacy", "default"] = "legacy",
    dtype: Literal["float64", "float32"] = "float64",
    batch_size: int = 1,
    output: Literal["sigmoid", "softmax"] = "sigmoid",
    biases: bool = False,
    momentum: float = 0.0,
    schedule: Literal["constant", "step", "cosine"] = "constant",
    schedule_epochs: int = 15,
    shuffle: bool = False,
    augment: Literal["none", "affine", "elastic"] = "none",
    preset: Literal["reference", "best"] | None = None,
    data_dir: str = "data",
    fresh: bool = False,
    max_rejected_fraction: float = 0.0,
    min_delta: float = 0.0,
    keep_checkpoints: int = 5,
    register_model: bool = True,
    publish_report: bool = True,
) -> dict[str, Any]:
    """Train the reference network on MNIST, checkpointing every epoch, and publish the results.

    `preset` ("reference" or "best") replaces the network parameters and `epochs` with the
    preset's; the seed and the data parameters still apply. `keep_checkpoints` keeps the weights
    of the newest N evaluated epochs (0: all); every epoch's metadata and scores are kept.
    """
    logger = run_logger()
    settings: dict[str, Any] = {
        "hidden_nodes": hidden_nodes,
        "learning_rate": learning_rate,
        "seed": seed,
        "init": init,
        "dtype": dtype,
        "batch_size": batch_size,
        "output": output,
        "biases": biases,
        "momentum": momentum,
        "schedule": schedule,
        "schedule_epochs": schedule_epochs,
        "shuffle": shuffle,
        "augment": augment,
    }
    if preset is not None:
        chosen = presets.preset(preset)
        epochs = chosen.pop("epochs")
        settings = {**NetworkConfig().to_dict(), **chosen, "seed": seed}
        logger.info("preset %s: %s, %d epochs", preset, chosen, epochs)
    config = NetworkConfig(**settings)
    check_parameters(epochs, max_rejected_fraction, min_delta, keep_checkpoints)
    paths = DataPaths(Path(data_dir))
    clock = _Stopwatch()

    train_future = ingest_task.submit(
        "train", train_csv, str(paths.processed), max_rejected_fraction
    )
    test_future = ingest_task.submit("test", test_csv, str(paths.processed), max_rejected_fraction)
    train, test = train_future.result(), test_future.result()
    lineage = {"train": lineage_of(train), "test": lineage_of(test)}
    clock.lap("ingest")

    folder = run_folder(paths.runs, config, train["sha256"], test["sha256"])
    with run_lock(folder):
        open_run(folder, config, train["sha256"], test["sha256"], fresh=fresh)
        resume = training.resume_point(folder)
        if resume:
            logger.info("resuming %s after epoch %d", folder.path, min(resume, epochs))
        records = _train_and_evaluate(
            folder, config, epochs, resume, train, test, lineage, keep_checkpoints
        )
        clock.lap("train_and_evaluate")
        finish_run_task(str(folder.path), epochs)
        decision = (
            register_task(str(folder.path), str(paths.models), test["parquet"], lineage, min_delta)
            if register_model
            else None
        )
        clock.lap("register")
        if publish_report:
            publish_task(str(folder.path), test["parquet"], lineage, decision)
        clock.lap("publish")
    final = records[-1]
    return {
        "run_dir": str(folder.path),
        "epochs": epochs,
        "accuracy": final["accuracy"],
        "confident": final["confident"],
        "flow_run_id": flow_run.get_id(),
        "trained_epochs": [epoch for epoch in range(1, epochs + 1) if epoch > resume],
        "metrics": [_summary(record) for record in records],
        "decision": decision,
        "timings": clock.laps,
    }


def _train_and_evaluate(
    folder: RunFolder,
    config: NetworkConfig,
    epochs: int,
    resume: int,
    train: dict[str, Any],
    test: dict[str, Any],
    lineage: dict[str, Any],
    keep_checkpoints: int,
) -> list[dict[str, Any]]:
    """Train the missing epochs in order; evaluate epoch k while epoch k+1 trains."""
    logger = run_logger()
    progress_id = create_progress_artifact(
        progress=0.0, key=PROGRESS_KEY, description=f"Training {folder.path.name}"
    )
    assert isinstance(progress_id, UUID)  # the sync API returns the id itself
    pending: list[PrefectFuture[dict[str, Any]]] = []
    records: list[dict[str, Any]] = []

    def collect(block: bool) -> None:
        while pending and (block or pending[0].state.is_final()):
            record = pending.pop(0).result()
            records.append(record)
            logger.info(training.epoch_line(record, epochs))
            update_progress_artifact(progress_id, 100.0 * len(records) / epochs)
            _notify(record, epochs)

    for epoch in range(1, epochs + 1):
        if epoch > resume:
            train_epoch_task(str(folder.path), epoch, config.to_dict(), train["parquet"], lineage)
            training.prune_checkpoints(folder, epoch, keep_checkpoints)
        pending.append(evaluate_epoch_task.submit(str(folder.path), epoch, test["parquet"]))
        collect(block=False)
    collect(block=True)
    training.prune_checkpoints(folder, epochs, keep_checkpoints)  # now every epoch is scored
    return records


class _Stopwatch:
    """Seconds spent in each stage of the flow body (the benchmark's breakdown)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 4)
        self._last = now


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("epoch", "accuracy", "confident", "mse", "train_seconds", "eval_seconds")
    return {key: record[key] for key in keys}


#: Called with (record, epochs) after each epoch's evaluation; the CLI's progress bar sets it.
EPOCH_LISTENERS: list[Any] = []


def _notify(record: dict[str, Any], epochs: int) -> None:
    for listener in EPOCH_LISTENERS:
        listener(record, epochs)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(train_pipeline())
