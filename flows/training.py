"""`mnist-training`: ingest -> train epochs with checkpoints -> evaluate -> register -> publish.

Every step is its own retryable task that finds its own output on disk first, so a retry, a re-run
after a crash (even SIGKILL) or a second run of a finished configuration resumes from the last valid
checkpoint and redoes nothing else. Tasks exchange paths and small typed records, never arrays.
In the UI's run graph the epochs form a chain (each waits for the previous one) with each
epoch's evaluation hanging off it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from prefect import flow, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from flows.server import claim_run_folder
from flows.tasks import RETRYABLE, check_parameters, ingest_task, run_logger
from mnistnn import presets
from mnistnn.config import DataPaths, NetworkConfig
from mnistnn.data.ingest import IngestSummary
from mnistnn.registry.from_run import register_run
from mnistnn.runs import steps as training
from mnistnn.runs.folders import RunFolder, open_run, run_folder, run_lock, shorter_run
from mnistnn.runs.records import DataLineage, EpochRecord, RunLineage

PROGRESS_KEY = "mnist-training-progress"

EpochListener = Callable[[EpochRecord, int], None]


@task(name="train-epoch", task_run_name="train epoch {epoch}", **RETRYABLE)
def train_epoch_task(
    run_dir: str, epoch: int, config: NetworkConfig, train_parquet: str, lineage: RunLineage
) -> training.EpochOutcome:
    """Train one epoch from the previous checkpoint and write checkpoint `epoch`."""
    return training.train_epoch(
        RunFolder(Path(run_dir)), epoch, config, train_parquet, lineage.to_dict()
    )


@task(name="evaluate-epoch", task_run_name="evaluate epoch {epoch}", **RETRYABLE)
def evaluate_epoch_task(run_dir: str, epoch: int, test_parquet: str) -> EpochRecord:
    """Score checkpoint `epoch` on the test set (accuracy, confident, MSE, confusion)."""
    return EpochRecord.from_eval(
        training.evaluate_epoch(RunFolder(Path(run_dir)), epoch, test_parquet)
    )


@task(name="finish-run", task_run_name="finish run", **RETRYABLE)
def finish_run_task(run_dir: str, epochs: int) -> list[EpochRecord]:
    """Write metrics.json and the final weights of the run."""
    return training.finish_run(RunFolder(Path(run_dir)), epochs)


@task(name="register-model", task_run_name="register model", **RETRYABLE)
def register_task(
    run_dir: str, models_dir: str, test_parquet: str, lineage: RunLineage, min_delta: float
) -> dict[str, Any]:
    """Hand the final model to the registry; it becomes champion only if it is better."""
    decision = register_run(
        RunFolder(Path(run_dir)),
        models_dir,
        test_parquet,
        lineage.to_dict(),
        min_delta=min_delta,
        flow_run_id=flow_run.get_id(),
    )
    run_logger().info("model registry: %s", decision["reason"])
    return decision


@task(name="publish", task_run_name="publish report", **RETRYABLE)
def publish_task(
    run_dir: str, test_parquet: str, lineage: RunLineage, decision: dict[str, Any] | None
) -> str:
    """Publish the epoch table, the report and a link to the run as Prefect artifacts."""
    from flows.publish import publish_run

    return publish_run(RunFolder(Path(run_dir)), test_parquet, lineage.to_dict(), decision)


@flow(name="mnist-training", log_prints=False)
def train_pipeline(
    train_csv: str = "data/raw/mnist_train.csv.gz",
    test_csv: str = "data/raw/mnist_test.csv.gz",
    hidden_nodes: int | None = None,
    learning_rate: float | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    init: Literal["legacy", "default"] | None = None,
    dtype: Literal["float64", "float32"] | None = None,
    batch_size: int | None = None,
    output: Literal["sigmoid", "softmax"] | None = None,
    biases: bool | None = None,
    momentum: float | None = None,
    schedule: Literal["constant", "step", "cosine"] | None = None,
    schedule_epochs: int | None = None,
    shuffle: bool | None = None,
    augment: Literal["none", "affine", "elastic"] | None = None,
    preset: Literal["reference", "best"] | None = None,
    data_dir: str = "data",
    fresh: bool = False,
    max_rejected_fraction: float = 0.0,
    min_delta: float = 0.0,
    keep_checkpoints: int = 5,
    register_model: bool = True,
    publish_report: bool = True,
) -> dict[str, Any]:
    """Train the MNIST network, checkpointing every epoch, and publish the results.

    Every network parameter left empty takes the preset's value (`preset` "reference" or
    "best"), or the book's reference value without a preset (88 hidden nodes, lr 0.05, 15
    epochs, ...); a value given explicitly always wins over the preset. `keep_checkpoints` keeps
    the weights of the newest N evaluated epochs (0: all); every epoch's metadata and scores are
    kept. Asking for fewer epochs than the run has trained answers from its checkpoints, or
    recomputes them in a sub-folder, never touching the longer run.
    """
    logger = run_logger()
    resolved = presets.resolve(
        preset,
        {
            "hidden_nodes": hidden_nodes,
            "learning_rate": learning_rate,
            "epochs": epochs,
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
        },
    )
    config, n_epochs = resolved.config, resolved.epochs
    check_parameters(max_rejected_fraction, min_delta, keep_checkpoints)
    logger.info("settings: %s", resolved.describe())
    paths = DataPaths(Path(data_dir))
    clock = _Stopwatch()

    train_future = ingest_task.submit(
        "train", train_csv, str(paths.processed), max_rejected_fraction
    )
    test_future = ingest_task.submit("test", test_csv, str(paths.processed), max_rejected_fraction)
    train, test = train_future.result(), test_future.result()
    lineage = RunLineage(
        DataLineage.of(train, "train"), DataLineage.of(test, "test"), resolved.describe()
    )
    clock.lap("ingest")

    folder = run_folder(paths.runs, config, train.sha256, test.sha256)
    with run_lock(folder):
        open_run(folder, config, train.sha256, test.sha256, fresh=fresh)
        if training.recorded_epochs(folder) > n_epochs:
            folder = shorter_run(folder, n_epochs)
            logger.info("the run has more than %d epochs: answering from %s", n_epochs, folder.path)
        resume = training.resume_point(folder)
        if resume:
            logger.info("resuming %s after epoch %d", folder.path, min(resume, n_epochs))
        records = _train_and_evaluate(
            folder, config, n_epochs, resume, train, test, lineage, keep_checkpoints
        )
        clock.lap("train_and_evaluate")
        finish_run_task(str(folder.path), n_epochs)
        decision = (
            register_task(str(folder.path), str(paths.models), test.parquet, lineage, min_delta)
            if register_model
            else None
        )
        clock.lap("register")
        if publish_report:
            publish_task(str(folder.path), test.parquet, lineage, decision)
        clock.lap("publish")
    final = records[-1]
    return {
        "run_dir": str(folder.path),
        "epochs": n_epochs,
        "accuracy": final.accuracy,
        "confident": final.confident,
        "flow_run_id": flow_run.get_id(),
        "settings": {"preset": preset, "explicit": list(resolved.overrides), **config.to_dict()},
        "trained_epochs": [epoch for epoch in range(1, n_epochs + 1) if epoch > resume],
        "metrics": [record.to_dict() for record in records],
        "decision": decision,
        "timings": clock.laps,
    }


def _train_and_evaluate(
    folder: RunFolder,
    config: NetworkConfig,
    epochs: int,
    resume: int,
    train: IngestSummary,
    test: IngestSummary,
    lineage: RunLineage,
    keep_checkpoints: int,
) -> list[EpochRecord]:
    """Train the missing epochs in order; evaluate epoch k while epoch k+1 trains."""
    logger = run_logger()
    crashed = claim_run_folder(folder.path, flow_run.get_id())
    if crashed:
        logger.warning("flow run %s died without finishing: marked Crashed", crashed)
    progress_id = create_progress_artifact(
        progress=0.0, key=PROGRESS_KEY, description=f"Training {folder.path.name}"
    )
    assert isinstance(progress_id, UUID)  # the sync API returns the id itself
    pending: list[PrefectFuture[EpochRecord]] = []
    records: list[EpochRecord] = []
    previous: list[State[Any]] = []  # the last epoch's state: the next one waits for it

    def collect(block: bool) -> None:
        while pending and (block or pending[0].state.is_final()):
            record = pending.pop(0).result()
            records.append(record)
            logger.info(record.line(epochs))
            update_progress_artifact(progress_id, 100.0 * len(records) / epochs)
            for listener in _LISTENERS:
                listener(record, epochs)

    for epoch in range(1, epochs + 1):
        if epoch > resume:
            state = train_epoch_task(
                str(folder.path),
                epoch,
                config,
                train.parquet,
                lineage,
                wait_for=previous,
                return_state=True,
            )
            state.result()  # raises when the epoch failed for good
            previous = [state]
            training.prune_checkpoints(folder, epoch, keep_checkpoints)
        pending.append(
            evaluate_epoch_task.submit(
                str(folder.path), epoch, test.parquet, return_state=False, wait_for=previous
            )
        )
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


_LISTENERS: list[EpochListener] = []


@contextlib.contextmanager
def epoch_listener(listener: EpochListener) -> Iterator[None]:
    """Call `listener(record, epochs)` after each scored epoch of flows run inside this block."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(train_pipeline())
