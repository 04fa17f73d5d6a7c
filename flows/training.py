"""`mnist-training`: ingest -> train epochs with checkpoints -> evaluate -> register -> publish.

Every step is its own retryable task that finds its own output on disk first, so a retry, a re-run
after a crash (even SIGKILL) or a second run of a finished configuration resumes from the last valid
checkpoint and redoes nothing else. Tasks exchange paths and small typed records, never arrays.
In the UI's run graph the epochs form a chain (each waits for the previous one) with each
scored epoch's evaluation hanging off it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal
from uuid import UUID

from prefect import flow
from prefect.artifacts import (
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from flows.parameters import check_parameters
from flows.server import claim_run_folder
from flows.tasks import ingest_task, run_logger
from flows.training_tasks import (
    evaluate_epoch_task,
    finish_run_task,
    new_data_task,
    publish_new_data_task,
    publish_task,
    recent_scores_task,
    register_task,
    train_epoch_task,
    warm_start_task,
)
from mnistnn import presets
from mnistnn.config import DataPaths, NetworkConfig
from mnistnn.data.ingest import IngestSummary
from mnistnn.model.checkpoint import load_weights
from mnistnn.runs import steps as training
from mnistnn.runs.folders import (
    RunFolder,
    open_run,
    run_folder,
    run_lock,
    shorter_run,
)
from mnistnn.runs.new_data import NewData
from mnistnn.runs.records import DataLineage, EpochRecord, RunLineage

PROGRESS_KEY = "mnist-training-progress"

EpochListener = Callable[[EpochRecord, int], None]


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
    evaluate_every: int | None = None,
    data_dir: str = "data",
    fresh: bool = False,
    max_rejected_fraction: float = 0.0,
    min_delta: float = 0.0,
    keep_checkpoints: int = 5,
    register_model: bool = True,
    publish_report: bool = True,
    incoming_dir: str | None = None,
    drift_threshold: float = 0.05,
    recent_fraction: float = 0.1,
    promote_on_recent: bool = False,
    warm_start: bool = False,
    settle_seconds: float = 5.0,
) -> dict[str, Any]:
    """Train the MNIST network, checkpointing every epoch, and publish the results.

    Every network parameter left empty takes the preset's value (`preset` "reference" or
    "best"), or the book's reference value without a preset (88 hidden nodes, lr 0.05, 15
    epochs, ...); a value given explicitly always wins over the preset. `keep_checkpoints` keeps
    the weights of the newest N epochs, and of scheduled epochs until they are scored (0: all);
    every epoch's metadata and scores are kept. `evaluate_every` scores every N-th epoch and
    always the last (the preset's value, else 1); it is not part of the run's key, since the
    weights do not depend on it, and a later run with a denser schedule scores the epochs it
    lacks from the kept checkpoints. Asking for fewer epochs than the run has trained answers
    from its checkpoints, or recomputes them in a sub-folder, never touching the longer run.

    The training data is a snapshot: `train_csv` plus every accepted batch of the inbox
    (`incoming_dir`, default `<data_dir>/incoming`), of which a `recent_fraction` slice of each
    batch is held out as recent test data. The champion is scored on each batch first, and a
    batch where it falls more than `drift_threshold` below its test accuracy is flagged as drift.
    `warm_start` fine-tunes the champion's weights instead of training from scratch;
    `promote_on_recent` lets the recent test data, not the fixed test set, decide promotion.
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
            "evaluate_every": evaluate_every,
        },
    )
    config, n_epochs, every = resolved.config, resolved.epochs, resolved.evaluate_every
    check_parameters(
        max_rejected_fraction,
        min_delta,
        keep_checkpoints,
        drift_threshold=drift_threshold,
        recent_fraction=recent_fraction,
        settle_seconds=settle_seconds,
    )
    logger.info("settings: %s", resolved.describe())
    paths = DataPaths.at(data_dir)
    clock = _Stopwatch()

    train_future = ingest_task.submit(
        "train", train_csv, str(paths.processed), max_rejected_fraction
    )
    test_future = ingest_task.submit("test", test_csv, str(paths.processed), max_rejected_fraction)
    train, test = train_future.result(), test_future.result()
    clock.lap("ingest")
    new = new_data_task(
        incoming_dir or str(paths.incoming),
        data_dir,
        train,
        test.sha256,
        max_rejected_fraction,
        settle_seconds,
        recent_fraction,
        drift_threshold,
    )
    snapshot = new.snapshot
    warm = warm_start_task(str(paths.models), config) if warm_start else None
    warm_key = None if warm is None else {k: warm[k] for k in ("version", "weights_sha256")}
    lineage = RunLineage(
        _train_lineage(train, new),
        DataLineage.of(test, "test"),
        resolved.describe(),
        snapshot=new.to_dict() if new.batches else None,
        warm_start=None if warm_key is None else {**warm_key, "mode": "warm_start"},
    )
    clock.lap("inbox")

    folder = run_folder(paths.runs, config, snapshot.sha256, test.sha256, warm_key)
    with run_lock(folder):
        extra: dict[str, Any] = {}
        if new.batches:
            extra["snapshot"] = {"sha256": snapshot.sha256, "manifest": snapshot.manifest}
        if warm_key is not None:
            extra["warm_start"] = warm_key
        open_run(folder, config, snapshot.sha256, test.sha256, fresh=fresh, extra=extra)
        initial = None
        if warm is not None:
            start = training.warm_network(load_weights(warm["weights"]), config, warm["version"])
            training.write_initial(folder, start)
            initial = str(folder.initial)
        if training.recorded_epochs(folder) > n_epochs:
            folder = shorter_run(folder, n_epochs)
            logger.info("the run has more than %d epochs: answering from %s", n_epochs, folder.path)
        resume = training.resume_point(folder)
        if resume:
            logger.info("resuming %s after epoch %d", folder.path, min(resume, n_epochs))
        _train_and_evaluate(
            folder,
            config,
            n_epochs,
            every,
            resume,
            snapshot.train_data,
            test,
            lineage,
            keep_checkpoints,
            initial,
        )
        clock.lap("train_and_evaluate")
        records = finish_run_task(str(folder.path), n_epochs)
        recent = None
        if new.recent_parquet is not None:
            recent = {
                **recent_scores_task(str(folder.path), str(paths.models), new.recent_parquet),
                "sha256": new.recent_sha256,
                "parquet": new.recent_parquet,
            }
            lineage = _with_recent(lineage, recent, promote_on_recent)
        decision = (
            register_task(
                str(folder.path),
                str(paths.models),
                test.parquet,
                lineage,
                min_delta,
                recent if promote_on_recent else None,
            )
            if register_model
            else None
        )
        clock.lap("register")
        if publish_report:
            publish_task(str(folder.path), test.parquet, lineage, decision)
            if new.batches:
                publish_new_data_task(new.batch_rows(), snapshot.sha256)
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
        "snapshot": _snapshot_summary(new, recent),
        "warm_start": lineage.warm_start,
    }


def _train_lineage(train: IngestSummary, new: NewData) -> DataLineage:
    """The base file alone (exactly as before the inbox), or the snapshot it grew into."""
    base = DataLineage.of(train, "train")
    if new.snapshot.manifest is None:
        return base
    batches = len(new.snapshot.batches)
    return DataLineage(
        "train",
        f"{train.source_name} + {batches} inbox batch{'es' if batches != 1 else ''} "
        f"(snapshot {new.snapshot.sha256[:16]})",
        new.snapshot.sha256,
        train.rows_read + sum(batch.accepted + batch.rejected for batch in new.accepted),
        new.snapshot.train_rows,
        train.rows_rejected + sum(batch.rejected for batch in new.accepted),
    )


def _with_recent(lineage: RunLineage, recent: dict[str, Any], decides: bool) -> RunLineage:
    """Record both models' accuracy on the recent test data in the lineage (and the report)."""
    snapshot = dict(lineage.snapshot or {})
    snapshot["recent"] = {**snapshot.get("recent", {}), **recent, "decides_promotion": decides}
    return RunLineage(lineage.train, lineage.test, lineage.settings, snapshot, lineage.warm_start)


def _snapshot_summary(new: NewData, recent: dict[str, Any] | None) -> dict[str, Any]:
    """The `snapshot` of `--json`: its sha256 and every batch (refused ones included)."""
    summary = new.to_dict()
    if recent is not None:
        summary["recent"] = {**summary["recent"], **recent}
    return summary


def _train_and_evaluate(
    folder: RunFolder,
    config: NetworkConfig,
    epochs: int,
    evaluate_every: int,
    resume: int,
    train_data: str,
    test: IngestSummary,
    lineage: RunLineage,
    keep_checkpoints: int,
    initial: str | None = None,
) -> list[EpochRecord]:
    """Train the missing epochs in order; score every `evaluate_every`-th epoch and the last.

    Each scored epoch is evaluated in the flow's thread right after it trained, before the next
    epoch starts. Evaluating it in a task that overlaps the next epoch (as the flow did first)
    takes the second core that both the per-sample engine and BLAS use: measured with the
    `best` preset at every epoch, the overlapped epochs trained at 2.0-2.2 s against 1.4-1.5 s
    alone, while scoring in turn costs only the evaluation itself (a fraction of a second), and
    the weights are the same either way.
    """
    logger = run_logger()
    crashed = claim_run_folder(folder.path, flow_run.get_id())
    if crashed:
        logger.warning("flow run %s died without finishing: marked Crashed", crashed)
    progress_id = create_progress_artifact(
        progress=0.0, key=PROGRESS_KEY, description=f"Training {folder.name}"
    )
    assert isinstance(progress_id, UUID)  # the sync API returns the id itself
    lost = training.unscorable(folder, resume, epochs, evaluate_every)
    if lost:
        logger.warning(
            "epoch(s) %s: never scored and their weights were pruned (keep_checkpoints); they "
            "stay unscored (train with fresh=True and this schedule to score them)",
            ", ".join(map(str, lost)),
        )
    records: list[EpochRecord] = []
    previous: list[State[Any]] = []  # the last epoch's state: the next one waits for it
    for epoch in range(1, epochs + 1):
        outcome = None
        if epoch > resume:
            state = train_epoch_task(
                str(folder.path),
                epoch,
                config,
                train_data,
                lineage,
                initial,
                wait_for=previous,
                return_state=True,
            )
            outcome = state.result()  # raises when the epoch failed for good
            previous = [state]
        if training.is_scheduled(epoch, epochs, evaluate_every) and epoch not in lost:
            # in this thread, before the next epoch trains: see the docstring
            record = evaluate_epoch_task(str(folder.path), epoch, test.parquet, wait_for=previous)
        elif outcome is None:
            record = training.epoch_record(folder, epoch)  # trained before: maybe scored then
        else:
            record = EpochRecord.unscored(epoch, outcome.train_seconds)
        if epoch > resume:  # after scoring: a scored epoch's weights may go at once
            training.prune_checkpoints(folder, epoch, keep_checkpoints, epochs, evaluate_every)
        records.append(record)
        logger.info(record.line(epochs))
        update_progress_artifact(progress_id, 100.0 * epoch / epochs)
        for listener in _LISTENERS:
            listener(record, epochs)
    # a resumed run may have scored old epochs just now: their weights may go too
    training.prune_checkpoints(folder, epochs, keep_checkpoints, epochs, evaluate_every)
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
