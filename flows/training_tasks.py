"""The tasks of the `mnist-training` flow: each a few lines around a library step.

Every task looks for its own valid output first (the library steps do), so Prefect's retries, a
re-run after a crash and a second run of finished work redo nothing that is already safe.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import (
    create_table_artifact,
)
from prefect.runtime import flow_run

from flows import events
from flows.tasks import RETRYABLE, run_logger
from mnistnn.config import DataPaths, NetworkConfig
from mnistnn.data.inbox import Batch, accepted, scan_inbox
from mnistnn.data.ingest import IngestSummary
from mnistnn.data.parquet import load_arrays
from mnistnn.data.snapshot import Snapshot, build_snapshot, write_recent_parquet
from mnistnn.errors import ConfigError
from mnistnn.model.checkpoint import load_weights
from mnistnn.model.metrics import accuracy
from mnistnn.registry.from_run import register_run
from mnistnn.registry.policy import PromotionPolicy
from mnistnn.registry.store import ModelRegistry
from mnistnn.runs import steps as training
from mnistnn.runs.drift import BatchDrift
from mnistnn.runs.folders import RunFolder
from mnistnn.runs.new_data import NewData, assess_batches, members_of
from mnistnn.runs.records import EpochRecord, RunLineage, WarmStart

NEW_DATA_KEY = "mnist-new-data"


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
    _log_batches(batches, drifts, snapshot, train.source_name)
    return NewData(
        snapshot=snapshot,
        batches=tuple(batches),
        drifts=drifts,
        recent_parquet=None if recent is None else recent[0],
        recent_sha256=None if recent is None else recent[1],
        recent_rows=0 if recent is None else recent[2],
        champion_version=None if champion is None else champion.version,
    )


def _log_batches(
    batches: list[Batch], drifts: dict[str, BatchDrift], snapshot: Snapshot, source_name: str
) -> None:
    """One line per refused batch (with its reason) and per accepted batch that is new or
    checked for drift (with its check), one line for the other accepted ones (their count: a
    line each would log the inbox's whole history every night), then the snapshot."""
    logger = run_logger()
    earlier = 0
    for batch in batches:
        check = drifts.get(batch.sha256)  # None: the champion trained on it (checked then)
        if batch.status != "accepted":
            if batch.new:
                logger.warning("refused %s: %s", batch.file, batch.reason)
            else:
                logger.info("still refused (content unchanged) %s: %s", batch.file, batch.reason)
        elif not batch.new and check is None:
            earlier += 1
        else:
            note = f"; DRIFT: {check.drift_reason}" if check is not None and check.drift else ""
            logger.info(
                "batch %s: %d rows (sha256 %s)%s%s",
                batch.file,
                batch.accepted,
                batch.sha256[:16],
                f", replaces {batch.replaces[:16]}" if batch.replaces else "",
                note,
            )
    if earlier:
        logger.info("%d earlier batch(es), the champion trained on them: unchanged", earlier)
    good = accepted(batches)
    if good:
        logger.info(
            "snapshot %s: %s + %d batch(es), %d training rows",
            snapshot.sha256[:16],
            source_name,
            len(good),
            snapshot.train_rows,
        )


@task(name="warm-start", task_run_name="warm start from the champion", **RETRYABLE)
def warm_start_task(models_dir: str, config: NetworkConfig) -> WarmStart:
    """The champion that a warm start begins with; ConfigError when its shapes differ."""
    registry = ModelRegistry(models_dir)
    champion = registry.champion()
    if champion is None:
        raise ConfigError(
            f"warm_start needs a champion, and the registry {models_dir} has none yet: "
            "train from scratch first (warm_start=false)"
        )
    training.warm_network(registry.load(champion.version), config, champion.version)
    return WarmStart(
        champion.version,
        champion.weights_sha256,
        str(registry.version_dir(champion.version) / "weights.npz"),
    )


@task(name="train-epoch", task_run_name="train epoch {epoch}", **RETRYABLE)
def train_epoch_task(
    run_dir: str,
    epoch: int,
    config: NetworkConfig,
    train_parquet: str,
    lineage: RunLineage,
    initial: str | None = None,
    threads: int | None = None,
) -> training.EpochOutcome:
    """Train one epoch from the previous checkpoint and write checkpoint `epoch`."""
    return training.train_epoch(
        RunFolder(run_dir), epoch, config, train_parquet, lineage, initial, threads=threads
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
    decide_on_recent: bool = False,
    rule: PromotionPolicy | None = None,
    ask: bool = False,
) -> dict[str, Any]:
    """Hand the final model to the registry; the promotion gate decides (mnistnn.registry.gate).

    With `recent` data the same test runs on it as a guardrail, or, with `decide_on_recent`
    (promote_on_recent), the recent data decides instead of the fixed test set.
    """
    metrics = None
    if recent is not None and decide_on_recent:
        test_scores = training.read_metrics(RunFolder(run_dir)).final
        metrics = {
            "accuracy": recent["model_accuracy"],
            "compared_on": "recent test data",
            "test_accuracy": test_scores.accuracy,
            "confident": test_scores.confident,
            "mse": test_scores.mse,
        }
    decision = register_run(
        RunFolder(run_dir),
        models_dir,
        test_parquet,
        lineage,
        min_delta=min_delta,
        flow_run_id=flow_run.get_id(),
        rule=rule,
        recent_parquet=None if recent is None else recent["parquet"],
        recent_sha256=None if recent is None else recent["sha256"],
        decide_on_recent=decide_on_recent,
        ask=ask,
        metrics=metrics,
    )
    if recent is not None and decide_on_recent:
        decision["reason"] = (
            f"on the recent test data ({recent['rows']} rows): {decision['reason']}"
        )
    run_logger().info("model registry: %s", decision["reason"])
    events.announce(events.decision_events(decision))
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

    return publish_run(RunFolder(run_dir), test_parquet, lineage, decision)
