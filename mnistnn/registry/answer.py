"""Is the result of a run already on disk? The check the CLI makes before it starts Prefect.

A run whose folder holds the requested epochs' scores, valid final weights and a report, and
whose weights the registry already holds, would train nothing and register nothing: the CLI
answers it from here, without a Prefect server. Anything missing or different returns None and
the flow runs as usual. No Prefect import here (`mnistnn` never imports it).

On object storage (`data_dir=s3://...`) the same check reads the bucket: a dozen small requests
(the two ingest summaries, the checkpoint listing, metrics, the final weights, the registry)
against a temporary Prefect server's start of several seconds, so it answers there too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mnistnn.config import DataPaths
from mnistnn.core import locations
from mnistnn.errors import CheckpointError
from mnistnn.model import checkpoint
from mnistnn.presets import Resolved
from mnistnn.registry.store import ModelRegistry
from mnistnn.runs.folders import RunFolder, read_json, run_folder
from mnistnn.runs.records import RunResult
from mnistnn.runs.steps import RunMetrics, is_scheduled, read_metrics, recorded_epochs

#: What `reason` says when nothing ran.
REASON = "finished run, model already registered, same data: nothing to train"


@dataclass(frozen=True)
class Answer:
    """The summary a finished run gives again: the flow's own result type, `ran` False."""

    result: RunResult

    @property
    def line(self) -> str:
        return f"nothing to run: {self.result.reason} (answered from {self.result.run_dir})"


def data_identity(csv_path: str | os.PathLike[str]) -> str:
    """The sha256 that keys a run's data: the source file's bytes, as the ingest hashes them."""
    return locations.sha256_of(csv_path)


def existing_result(
    paths: DataPaths,
    resolved: Resolved,
    train_sha256: str,
    test_sha256: str,
    *,
    fresh: bool = False,
    max_rejected_fraction: float = 0.0,
    parameters: dict[str, Any] | None = None,
) -> Answer | None:
    """The finished run of these settings and data, when nothing would be trained or registered.

    `train_sha256` / `test_sha256` are the data identities the run folder is keyed by (today the
    sha256 of each CSV; a snapshot's hash when the training data becomes one). None when
    `fresh`, when a data file was never ingested (or ingesting it again could be refused under
    `max_rejected_fraction`), when the run lacks an epoch or a score that `resolved`'s evaluation
    schedule asks for, its final weights are not valid, its report is missing, or the registry
    does not hold its weights.
    """
    if fresh:
        return None
    for digest in (train_sha256, test_sha256):
        if not _ingested_within(paths.processed, digest, max_rejected_fraction):
            return None
    epochs = resolved.epochs
    found = _finished(run_folder(paths.runs, resolved.config, train_sha256, test_sha256), resolved)
    if found is None:
        return None
    folder, metrics = found
    weights_sha = _final_weights_sha(folder, epochs)
    if weights_sha is None:
        return None
    registry = ModelRegistry(paths.models)
    try:
        version = registry.find_by_weights(weights_sha)
    except Exception:  # an unreadable registry: let the flow meet (and report) it
        return None
    if version is None or version.decision is None:
        return None
    decision = version.decision.to_dict()
    decision["reason"] = f"already registered as {version.version} (then: {decision['reason']})"
    return Answer(
        RunResult(
            run_dir=str(folder.path),
            epochs=epochs,
            metrics=metrics.records,
            settings=resolved.settings(),
            parameters=parameters,
            decision=decision,
            ran=False,
            reason=REASON,
        )
    )


def _finished(folder: RunFolder, resolved: Resolved) -> tuple[RunFolder, RunMetrics] | None:
    """The run (or its `upto-N` shorter run) with every epoch, score and report asked for."""
    epochs = resolved.epochs
    if recorded_epochs(folder) > epochs:
        folder = RunFolder(locations.join(folder.path, f"upto-{epochs:04d}"))
    if recorded_epochs(folder) != epochs or not locations.exists(folder.report):
        return None
    try:
        metrics = read_metrics(folder)
    except CheckpointError:  # not finished, or damaged: the flow meets (and reports) it
        return None
    if metrics.epochs != epochs or any(
        record.accuracy is None
        for record in metrics.records
        if is_scheduled(record.epoch, epochs, resolved.evaluate_every)
    ):  # a denser schedule than the run was trained with: the flow scores what it can
        return None
    return folder, metrics


def _ingested_within(
    processed: locations.Location, digest: str, max_rejected_fraction: float
) -> bool:
    """The ingest's stored summary of this content exists and passes the rejection limit."""
    summary = read_json(locations.join(processed, f"{digest[:16]}.json"))
    if summary is None or summary.get("sha256") != digest:
        return False
    if not locations.exists(locations.join(processed, f"{digest[:16]}.parquet")):
        return False
    read, rejected = summary.get("rows_read"), summary.get("rows_rejected")
    if not isinstance(read, int) or not isinstance(rejected, int) or read <= 0:
        return False
    return rejected == 0 or rejected / read <= max_rejected_fraction


def _final_weights_sha(folder: RunFolder, epochs: int) -> str | None:
    """The sha256 of `weights.npz` when it is the final checkpoint's weights, else None."""
    _, meta_path = checkpoint.checkpoint_paths(folder.checkpoints, epochs)
    try:
        vouched = checkpoint.read_metadata(meta_path)["weights_sha256"]
        actual = locations.sha256_of(folder.weights)
    except (OSError, ValueError, Exception):
        return None
    return actual if actual == vouched else None
