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
from typing import Any, Literal
from uuid import UUID

from prefect import flow, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from flows.server import claim_run_folder
from flows.tasks import RETRYABLE, check_parameters, ingest_task, run_logger
from mnistnn import presets
from mnistnn.config import DataPaths, NetworkConfig
from mnistnn.data.inbox import accepted, scan_inbox
from mnistnn.data.ingest import IngestSummary
from mnistnn.data.parquet import load_arrays
from mnistnn.data.snapshot import build_snapshot, write_recent_parquet
from mnistnn.errors import ConfigError
from mnistnn.model.checkpoint import load_weights
from mnistnn.model.metrics import accuracy
from mnistnn.registry.from_run import register_run
from mnistnn.registry.store import ModelRegistry
from mnistnn.runs import steps as training
from mnistnn.runs.drift import NewData, assess_batches, members_of
from mnistnn.runs.folders import (
    RunFolder,
    open_run,
    read_json,
    run_folder,
    run_lock,
    shorter_run,
)
from mnistnn.runs.records import DataLineage, EpochRecord, RunLineage

PROGRESS_KEY = "mnist-training-progress"
NEW_DATA_KEY = "mnist-new-data"

EpochListener = Callable[[EpochRecord, int], None]


@task(name="new-data", task_run_name="read the inbox", **RETRYABLE)
def new_data_task(
    incoming_dir: str,
    data_dir: str,
    train: IngestSummary,
    test_sha256: str,
    max_rejected_fraction: float,
    settle_seconds: float,
    recent_fraction: float,
    drift_threshold: float,
) -> NewData:
    """Ingest the inbox's new batches, build the snapshot, score the champion on each batch."""
    logger = run_logger()
    paths = DataPaths.at(data_dir)
    batches = scan_inbox(
        incoming_dir,
        paths,
        max_rejected_fraction=max_rejected_fraction,
        settle_seconds=settle_seconds,
    )
    good = accepted(batches)
    snapshot = build_snapshot(
        train.sha256,
        train.rows_accepted,
        train.parquet,
        [(batch.sha256, str(batch.parquet)) for batch in good],
        paths,
        recent_fraction=recent_fraction,
    )
    registry = ModelRegistry(paths.models)
    champion = registry.champion() if good else None
    network = None if champion is None else registry.load(champion.version)
    drifts = assess_batches(
        snapshot,
        good,
        network,
        None if champion is None else champion.scores.get(test_sha256, champion.accuracy),
        set() if champion is None else members_of(paths.snapshots, champion.train_sha256),
        threshold=drift_threshold,
    )
    recent = write_recent_parquet(snapshot)
    for batch in batches:
        if batch.status != "accepted":
            if batch.new:
                logger.warning("refused %s: %s", batch.file, batch.reason)
            else:
                logger.info("still refused (content unchanged) %s: %s", batch.file, batch.reason)
            continue
        check = drifts[batch.sha256]
        note = f"; DRIFT: {check.drift_reason}" if check.drift else ""
        logger.info(
            "batch %s: %d rows (sha256 %s)%s%s",
            batch.file,
            batch.accepted,
            batch.sha256[:16],
            f", replaces {batch.replaces[:16]}" if batch.replaces else "",
            note,
        )
    if good:
        logger.info(
            "snapshot %s: %s + %d batch(es), %d training rows",
            snapshot.sha256[:16],
            train.source_name,
            len(good),
            snapshot.train_rows,
        )
    return NewData(
        snapshot=snapshot,
        batches=tuple(batches),
        drifts=drifts,
        recent_parquet=None if recent is None else recent[0],
        recent_sha256=None if recent is None else recent[1],
        recent_rows=0 if recent is None else recent[2],
        champion_version=None if champion is None else champion.version,
    )


@task(name="warm-start", task_run_name="warm start from the champion", **RETRYABLE)
def warm_start_task(models_dir: str, config: NetworkConfig) -> dict[str, Any]:
    """The champion that a warm start begins with; ConfigError when its shapes differ."""
    registry = ModelRegistry(models_dir)
    champion = registry.champion()
    if champion is None:
        raise ConfigError(
            f"warm_start needs a champion, and the registry {models_dir} has none yet: "
            "train from scratch first (warm_start=false)"
        )
    training.warm_network(registry.load(champion.version), config, champion.version)
    return {
        "mode": "warm_start",
        "version": champion.version,
        "weights_sha256": champion.weights_sha256,
        "weights": str(registry.version_dir(champion.version) / "weights.npz"),
    }


@task(name="train-epoch", task_run_name="train epoch {epoch}", **RETRYABLE)
def train_epoch_task(
    run_dir: str,
    epoch: int,
    config: NetworkConfig,
    train_parquet: str,
    lineage: RunLineage,
    initial: str | None = None,
) -> training.EpochOutcome:
    """Train one epoch from the previous checkpoint and write checkpoint `epoch`."""
    return training.train_epoch(
        RunFolder(run_dir), epoch, config, train_parquet, lineage.to_dict(), initial
    )


@task(name="score-recent", task_run_name="score on recent data", **RETRYABLE)
def recent_scores_task(run_dir: str, models_dir: str, recent_parquet: str) -> dict[str, Any]:
    """Both models on the recent test data: this run's final model and the current champion."""
    pixels, labels = load_arrays(recent_parquet)
    model = load_weights(RunFolder(run_dir).weights)
    registry = ModelRegistry(models_dir)
    champion = registry.champion()
    champion_score = None
    if champion is not None:
        champion_score = accuracy(registry.load(champion.version).query(pixels), labels)
    return {
        "rows": len(labels),
        "model_accuracy": accuracy(model.query(pixels), labels),
        "champion_version": None if champion is None else champion.version,
        "champion_accuracy": champion_score,
    }


@task(name="evaluate-epoch", task_run_name="evaluate epoch {epoch}", **RETRYABLE)
def evaluate_epoch_task(run_dir: str, epoch: int, test_parquet: str) -> EpochRecord:
    """Score checkpoint `epoch` on the test set (accuracy, confident, MSE, confusion)."""
    return EpochRecord.from_eval(training.evaluate_epoch(RunFolder(run_dir), epoch, test_parquet))


@task(name="finish-run", task_run_name="finish run", **RETRYABLE)
def finish_run_task(run_dir: str, epochs: int) -> list[EpochRecord]:
    """Write metrics.json and the final weights of the run."""
    return training.finish_run(RunFolder(run_dir), epochs)


@task(name="register-model", task_run_name="register model", **RETRYABLE)
def register_task(
    run_dir: str,
    models_dir: str,
    test_parquet: str,
    lineage: RunLineage,
    min_delta: float,
    recent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Hand the final model to the registry; it becomes champion only if it is better.

    With `recent` (promote_on_recent), the registry's rule compares both models on the recent
    test data instead of the fixed test set.
    """
    if recent is None:
        decision = register_run(
            RunFolder(run_dir),
            models_dir,
            test_parquet,
            lineage.to_dict(),
            min_delta=min_delta,
            flow_run_id=flow_run.get_id(),
        )
    else:
        decision = _register_on_recent(run_dir, models_dir, lineage, min_delta, recent)
    run_logger().info("model registry: %s", decision["reason"])
    return decision


def _register_on_recent(
    run_dir: str,
    models_dir: str,
    lineage: RunLineage,
    min_delta: float,
    recent: dict[str, Any],
) -> dict[str, Any]:
    """The registry's rule with the recent test data as "the same test data" of both models."""
    folder = RunFolder(run_dir)
    final = read_json(folder.metrics_json) or {"metrics": [{}]}
    test_scores = final["metrics"][-1]

    def rescore(champion: Any) -> float:
        pixels, labels = load_arrays(recent["parquet"])
        return accuracy(champion.query(pixels), labels)

    registry = ModelRegistry(models_dir)
    known = {version.version for version in registry.versions()}
    decision = registry.register(
        load_weights(folder.weights),
        metrics={
            "accuracy": recent["model_accuracy"],
            "compared_on": "recent test data",
            "test_accuracy": test_scores.get("accuracy"),
            "confident": test_scores.get("confident"),
            "mse": test_scores.get("mse"),
        },
        test_sha256=recent["sha256"],
        train_sha256=lineage.train.sha256,
        run_dir=str(folder.path),
        flow_run_id=flow_run.get_id(),
        min_delta=min_delta,
        rescore=rescore,
    ).to_dict()
    decision["reason"] = f"on the recent test data ({recent['rows']} rows): {decision['reason']}"
    if decision["version"] in known:  # a re-run of a finished run: nothing new was registered
        decision["reason"] = (
            f"already registered as {decision['version']} (then: {decision['reason']})"
        )
    return decision


@task(name="publish-new-data", task_run_name="publish new data", **RETRYABLE)
def publish_new_data_task(rows: list[dict[str, Any]], snapshot_sha256: str) -> None:
    """The `mnist-new-data` table: one row per inbox batch of the snapshot."""
    shown = ("file", "sha256", "status", "accepted", "rejected", "champion_accuracy", "drift")
    table = [
        {
            **{key: row[key] for key in shown},
            "sha256": row["sha256"][:16],
            "champion_accuracy": None
            if row["champion_accuracy"] is None
            else round(row["champion_accuracy"], 4),
            "reason": row["drift_reason"] if row["status"] == "accepted" else row["reason"],
            "replaces": None if row["replaces"] is None else row["replaces"][:16],
        }
        for row in rows
    ]
    create_table_artifact(
        key=NEW_DATA_KEY,
        table=table,
        description=f"Inbox batches of snapshot {snapshot_sha256[:16]}",
    )


@task(name="publish", task_run_name="publish report", **RETRYABLE)
def publish_task(
    run_dir: str, test_parquet: str, lineage: RunLineage, decision: dict[str, Any] | None
) -> str:
    """Publish the epoch table, the report and a link to the run as Prefect artifacts."""
    from flows.publish import publish_run

    return publish_run(RunFolder(run_dir), test_parquet, lineage.to_dict(), decision)


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
    the weights of the newest N evaluated epochs (0: all); every epoch's metadata and scores are
    kept. Asking for fewer epochs than the run has trained answers from its checkpoints, or
    recomputes them in a sub-folder, never touching the longer run.

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
        },
    )
    config, n_epochs = resolved.config, resolved.epochs
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
        records = _train_and_evaluate(
            folder,
            config,
            n_epochs,
            resume,
            snapshot.train_data,
            test,
            lineage,
            keep_checkpoints,
            initial,
        )
        clock.lap("train_and_evaluate")
        finish_run_task(str(folder.path), n_epochs)
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
    resume: int,
    train_data: str,
    test: IngestSummary,
    lineage: RunLineage,
    keep_checkpoints: int,
    initial: str | None = None,
) -> list[EpochRecord]:
    """Train the missing epochs in order; evaluate epoch k while epoch k+1 trains."""
    logger = run_logger()
    crashed = claim_run_folder(folder.path, flow_run.get_id())
    if crashed:
        logger.warning("flow run %s died without finishing: marked Crashed", crashed)
    progress_id = create_progress_artifact(
        progress=0.0, key=PROGRESS_KEY, description=f"Training {folder.name}"
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
                train_data,
                lineage,
                initial,
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
