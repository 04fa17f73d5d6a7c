"""The named steps of the `mnist-training` flow (`flows.training`): each reads as one line of
the pipeline there and does its work through the tasks of `flows.training_tasks`."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from flows.approval import ask_person, waits_for_person
from flows.server import claim_run_folder
from flows.tasks import ingest_task, run_logger
from flows.training_tasks import (
    evaluate_epoch_task,
    new_data_task,
    recent_scores_task,
    register_task,
    train_epoch_task,
)
from mnistnn.config import DataPaths
from mnistnn.data.ingest import IngestSummary
from mnistnn.model.checkpoint import load_weights
from mnistnn.parameters import PromotionParams, RunOptions, TrainingParameters, flat
from mnistnn.presets import Resolved
from mnistnn.runs import steps as training
from mnistnn.runs.folders import RunFolder, open_run, shorter_run
from mnistnn.runs.new_data import NewData
from mnistnn.runs.records import DataLineage, EpochRecord, RunLineage, WarmStart

PROGRESS_KEY = "mnist-training-progress"

EpochListener = Callable[[EpochRecord, int], None]


def ingest(params: TrainingParameters, paths: DataPaths) -> tuple[IngestSummary, IngestSummary]:
    """Both data files, validated into Parquet at once (two tasks side by side)."""
    processed, limit = str(paths.processed), params.inbox.max_rejected_fraction
    train_csv = params.data.train_csv or str(paths.train_csv)
    test_csv = params.data.test_csv or str(paths.test_csv)
    train_future = ingest_task.submit("train", train_csv, processed, limit)
    test_future = ingest_task.submit("test", test_csv, processed, limit)
    return train_future.result(), test_future.result()


def new_data(
    params: TrainingParameters, paths: DataPaths, train: IngestSummary, test: IngestSummary
) -> NewData:
    """The inbox's accepted batches, the snapshot they make with the base file, drift checks."""
    inbox = params.inbox
    return new_data_task(
        params.data.incoming_dir or str(paths.incoming),
        params.data.data_dir,
        train,
        test.sha256,
        inbox.max_rejected_fraction,
        inbox.settle_seconds,
        inbox.recent_fraction,
        inbox.drift_threshold,
    )


def lineage(
    train: IngestSummary,
    test: IngestSummary,
    new: NewData,
    resolved: Resolved,
    warm: WarmStart | None,
    params: TrainingParameters,
) -> RunLineage:
    """The run's data, its resolved settings and every declared parameter (for the report)."""
    return RunLineage(
        _train_lineage(train, new),
        DataLineage.of(test, "test"),
        resolved.describe(),
        snapshot=new.to_dict() if new.batches else None,
        warm_start=None if warm is None else warm.lineage(),
        parameters=flat(params),
    )


def open_folder(
    folder: RunFolder,
    resolved: Resolved,
    new: NewData,
    test: IngestSummary,
    warm: WarmStart | None,
    fresh: bool,
) -> tuple[RunFolder, int, str | None]:
    """Open (or resume) the run folder: (folder, last trained epoch, warm-start weights)."""
    logger = run_logger()
    snapshot, config, epochs = new.snapshot, resolved.config, resolved.epochs
    extra: dict[str, Any] = {}
    if new.batches:
        extra["snapshot"] = {"sha256": snapshot.sha256, "manifest": snapshot.manifest}
    if warm is not None:
        extra["warm_start"] = warm.key()
    open_run(folder, config, snapshot.sha256, test.sha256, fresh=fresh, extra=extra)
    initial = None
    if warm is not None:
        start = training.warm_network(load_weights(warm.weights), config, warm.version)
        training.write_initial(folder, start)
        initial = str(folder.initial)
    if training.recorded_epochs(folder) > epochs:
        folder = shorter_run(folder, epochs)
        logger.info("the run has more than %d epochs: answering from %s", epochs, folder.path)
    resume = training.resume_point(folder)
    if resume:
        logger.info("resuming %s after epoch %d", folder.path, min(resume, epochs))
    return folder, resume, initial


def recent(
    folder: RunFolder, paths: DataPaths, new: NewData, lineage: RunLineage, decides: bool
) -> tuple[dict[str, Any] | None, RunLineage]:
    """Both models on the recent test data (when the inbox gave some), kept in the lineage."""
    if new.recent_parquet is None:
        return None, lineage
    scores = {
        **recent_scores_task(str(folder.path), str(paths.models), new.recent_parquet),
        "sha256": new.recent_sha256,
        "parquet": new.recent_parquet,
    }
    return scores, _with_recent(lineage, scores, decides)


def register(
    folder: RunFolder,
    paths: DataPaths,
    test: IngestSummary,
    lineage: RunLineage,
    promotion: PromotionParams,
    recent: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Hand the final model to the registry (None when `register_model` is off); a close call
    under `approval="ask"` then waits for a person (flows.approval)."""
    if not promotion.register_model:
        return None
    ask = promotion.approval == "ask"
    decision = register_task(
        str(folder.path),
        str(paths.models),
        test.parquet,
        lineage,
        promotion.min_delta,
        recent,
        promotion.promote_on_recent,
        promotion.rule(),
        ask,
    )
    if ask and waits_for_person(decision):
        decision = ask_person(str(paths.models), decision, promotion.approval_timeout)
    return decision


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
    return dataclasses.replace(lineage, snapshot=snapshot)


def snapshot_summary(new: NewData, recent: dict[str, Any] | None) -> dict[str, Any]:
    """The `snapshot` of `--json`: its sha256 and every batch (refused ones included)."""
    summary = new.to_dict()
    if recent is not None:
        summary["recent"] = {**summary["recent"], **recent}
    return summary


def _start(
    folder: RunFolder, resume: int, epochs: int, evaluate_every: int
) -> tuple[UUID, list[int]]:
    """Claim the run folder, open the progress artifact, name the epochs that stay unscored."""
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
    return progress_id, lost


def train_and_evaluate(
    folder: RunFolder,
    resolved: Resolved,
    resume: int,
    train_data: str,
    test: IngestSummary,
    lineage: RunLineage,
    options: RunOptions,
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
    config, epochs, evaluate_every = resolved.config, resolved.epochs, resolved.evaluate_every
    keep_checkpoints = options.keep_checkpoints
    logger = run_logger()
    progress_id, lost = _start(folder, resume, epochs, evaluate_every)
    records: list[EpochRecord] = []
    previous: list[State[Any]] = []  # the last epoch's state: the next one waits for it
    for epoch in range(1, epochs + 1):
        outcome = None
        if epoch > resume:
            state = train_epoch_task(
                str(folder.path), epoch, config, train_data, lineage, initial, options.threads,
                wait_for=previous, return_state=True,
            )  # fmt: skip
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


class Stopwatch:
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
