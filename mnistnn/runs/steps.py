"""The pipeline's steps as plain functions: train one epoch, evaluate one checkpoint, finish a run.

Each step looks for its own valid output first and returns it when present, so a retry, a re-run
after a crash or a second invocation of a finished run redoes nothing that is already safe on disk.
The Prefect tasks in `flows/` are thin wrappers around these; a notebook can call them directly.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mnistnn.config import NetworkConfig
from mnistnn.core import locations
from mnistnn.core.files import sha256_bytes
from mnistnn.core.locations import Location
from mnistnn.data.parquet import load_arrays
from mnistnn.errors import CheckpointError, ConfigError
from mnistnn.model import checkpoint
from mnistnn.model.checkpoint import load_weights, save_weights
from mnistnn.model.metrics import evaluate_outputs
from mnistnn.model.network import NeuralNetwork
from mnistnn.runs.folders import RunFolder, read_json
from mnistnn.runs.records import SCORE_FIELDS, EpochRecord, RunLineage
from mnistnn.types import LabelArray, PixelArray

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochOutcome:
    """What `train_epoch` returns: the checkpoint's metadata path and how long training took."""

    epoch: int
    checkpoint: str
    train_seconds: float
    reused: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_training(train_data: str | os.PathLike[str]) -> tuple[PixelArray, LabelArray]:
    """The training rows of a run: an ingested Parquet file, or a snapshot manifest (`.json`)."""
    if str(train_data).endswith(".json"):
        from mnistnn.data.snapshot import load_snapshot

        return load_snapshot(train_data)
    return load_arrays(train_data)


def warm_network(champion: NeuralNetwork, config: NetworkConfig, name: str) -> NeuralNetwork:
    """A network of `config` that starts from the champion's weights (and biases, if both have
    them); ConfigError naming both shapes when they differ. Momentum starts at rest."""
    have = (champion.w_input_hidden.shape, champion.w_hidden_output.shape)
    want = ((config.hidden_nodes, config.input_nodes), (config.output_nodes, config.hidden_nodes))
    if have != want:
        raise ConfigError(
            f"warm_start: the champion {name} has weights {have[0]} and {have[1]}, this run's "
            f"configuration needs {want[0]} and {want[1]}; train with the champion's "
            f"hidden_nodes={champion.config.hidden_nodes}, or from scratch (warm_start=false)"
        )
    extra = {}
    if config.biases and champion.config.biases:
        extra = {"bias_hidden": champion.bias_hidden, "bias_output": champion.bias_output}
    return NeuralNetwork(
        config, (champion.w_input_hidden, champion.w_hidden_output), extra_state=extra
    )


def write_initial(folder: RunFolder, network: NeuralNetwork) -> str:
    """Save the warm start's weights in the run folder once; return their sha256.

    Epoch 1 starts from this copy, so a resumed or re-run warm run never depends on what the
    registry's champion is by then.
    """
    if locations.exists(folder.initial):
        return sha256_bytes(locations.read_bytes(folder.initial))
    return save_weights(folder.initial, network)


def check_keep(keep_checkpoints: int) -> int:
    """`keep_checkpoints` must be a whole number >= 0 (0 keeps every epoch's weights)."""
    if isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int):
        raise ConfigError(f"keep_checkpoints must be an integer >= 0, got {keep_checkpoints!r}")
    if keep_checkpoints < 0:
        raise ConfigError(f"keep_checkpoints must be >= 0 (0 keeps all), got {keep_checkpoints}")
    return keep_checkpoints


def recorded_epochs(folder: RunFolder) -> int:
    """The highest epoch the run has trained (its metadata stays even when weights are pruned)."""
    return max(checkpoint.recorded(folder.checkpoints), default=0)


def resume_point(folder: RunFolder) -> int:
    """The highest epoch with a valid checkpoint (0 when none): training continues after it."""
    found = checkpoint.latest_valid(folder.checkpoints)
    return 0 if found is None else found[0]


def train_epoch(
    folder: RunFolder,
    epoch: int,
    config: NetworkConfig,
    train_parquet: str | os.PathLike[str],
    lineage: RunLineage | None = None,
    initial: str | os.PathLike[str] | None = None,
    *,
    threads: int | None = None,
) -> EpochOutcome:
    """Train epoch `epoch` from checkpoint `epoch - 1` (or the initial weights) and save it.

    `train_parquet` is an ingested Parquet file or a snapshot manifest; `initial` the weights
    epoch 1 starts from in a warm-started run (None: the configuration's own initialisation);
    `threads` as in `NeuralNetwork.train_epoch` (None: `$MNISTNN_THREADS` or auto).
    """
    if epoch < 1:
        raise ValueError(f"epoch must be >= 1, got {epoch}")
    _, meta_path = checkpoint.checkpoint_paths(folder.checkpoints, epoch)
    if checkpoint.is_valid(meta_path):
        record = checkpoint.read_metadata(meta_path)
        return EpochOutcome(epoch, str(meta_path), float(record["train_seconds"]), reused=True)
    network, previous = _starting_point(folder, epoch, config, initial)
    pixels, labels = load_training(train_parquet)
    started = time.perf_counter()
    network.train_epoch(pixels, labels, threads=threads)
    seconds = time.perf_counter() - started
    if not (
        np.isfinite(network.w_input_hidden).all() and np.isfinite(network.w_hidden_output).all()
    ):
        raise ValueError(
            f"epoch {epoch}: weights became NaN or infinite; lower the learning rate "
            f"({config.learning_rate})"
        )
    metadata = {
        "train_seconds": seconds,
        "history": [*previous.get("history", []), {"epoch": epoch, "train_seconds": seconds}],
        "metrics": _evaluations_so_far(folder, epoch, previous.get("metrics", [])),
        "lineage": {} if lineage is None else lineage.to_dict(),
        "rng": {
            "init": config.init,
            "seed": config.seed,
            "training": (
                "shuffle and augmentation derived from (seed, epoch); no state to carry"
                if config.shuffle or config.augment != "none"
                else "none (file order)"
            ),
        },
    }
    path = checkpoint.save_checkpoint(folder.checkpoints, epoch, network, metadata)
    return EpochOutcome(epoch, str(path), seconds, reused=False)


def _starting_point(
    folder: RunFolder, epoch: int, config: NetworkConfig, initial: str | os.PathLike[str] | None
) -> tuple[NeuralNetwork, dict[str, Any]]:
    """The network that epoch `epoch` starts from, and the metadata of the checkpoint it came
    from (empty for epoch 1)."""
    if epoch == 1 and initial is not None:
        start = load_weights(initial)
        if start.config != config:
            raise CheckpointError(f"{initial}: warm-start weights of another configuration")
        return start, {}
    if epoch == 1:
        return NeuralNetwork(config), {}
    _, previous = checkpoint.checkpoint_paths(folder.checkpoints, epoch - 1)
    try:  # loading verifies the sha256: no separate validity check that hashes it again
        network, record = checkpoint.load_checkpoint(previous)
    except CheckpointError as exc:
        raise CheckpointError(
            f"{previous}: checkpoint of epoch {epoch - 1} is missing or invalid ({exc}); "
            "run the flow again to recompute it"
        ) from exc
    if network.config != config:
        raise CheckpointError(f"{previous}: written for another configuration")
    return network, record


def _evaluations_so_far(
    folder: RunFolder, epoch: int, known: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Scores of the epochs before `epoch`: those the previous checkpoint already carried, plus
    any scored since, so each eval file is read about once. One listing of `evals/` finds them:
    a sparse schedule leaves most epochs without one, and on S3 each miss would be a request."""
    found = {record["epoch"]: record for record in known}
    for earlier in sorted(scored_epochs(folder)):
        if earlier >= epoch or earlier in found:
            continue
        record = read_json(folder.eval_path(earlier))
        if record is not None:
            found[earlier] = {key: record[key] for key in SCORE_FIELDS}
    return [found[key] for key in sorted(found)]


def scored_epochs(folder: RunFolder) -> set[int]:
    """The epochs with an eval file (named as checkpoints are), from one listing of `evals/`."""
    return set(checkpoint.recorded(folder.evals))


def evaluate_epoch(
    folder: RunFolder, epoch: int, test_parquet: str | os.PathLike[str]
) -> dict[str, Any]:
    """Score checkpoint `epoch` on the test set; the record is saved beside the run's evals.

    An existing record for the same weights (by sha256) is returned without loading them, so
    epochs whose weights were pruned keep their scores.
    """
    _, meta_path = checkpoint.checkpoint_paths(folder.checkpoints, epoch)
    existing = read_json(folder.eval_path(epoch))
    if existing is not None and locations.exists(meta_path):
        vouched = checkpoint.read_metadata(meta_path)["weights_sha256"]
        if existing.get("weights_sha256") == vouched:
            return existing
    network, record = checkpoint.load_checkpoint(meta_path)
    pixels, labels = load_arrays(test_parquet)
    started = time.perf_counter()
    scores = evaluate_outputs(network.query(pixels), labels)
    result = {
        "epoch": epoch,
        **scores.to_dict(),
        "eval_seconds": time.perf_counter() - started,
        "train_seconds": float(record["train_seconds"]),
        "weights_sha256": record["weights_sha256"],
    }
    locations.write_json(folder.eval_path(epoch), result)
    return result


def is_scheduled(epoch: int, epochs: int, evaluate_every: int) -> bool:
    """Whether a run of `epochs` scores `epoch` on the test set: every `evaluate_every`-th
    epoch, and always the last (the model that is registered and reported)."""
    return epoch == epochs or epoch % evaluate_every == 0


def unscorable(folder: RunFolder, trained: int, epochs: int, evaluate_every: int) -> list[int]:
    """Scheduled epochs up to `trained` that have no score and whose weights are gone (pruned
    under an earlier, sparser schedule): nothing can score them now short of training again."""
    kept = scored_epochs(folder) | set(checkpoint.recorded(folder.checkpoints, ".npz"))
    return [
        epoch
        for epoch in range(1, min(trained, epochs) + 1)
        if is_scheduled(epoch, epochs, evaluate_every) and epoch not in kept
    ]


def prune_checkpoints(
    folder: RunFolder, newest: int, keep: int, epochs: int | None = None, evaluate_every: int = 1
) -> list[Location]:
    """Delete the weights of epochs older than the newest `keep` (0 keeps all) that are scored,
    or that the schedule of a run of `epochs` never scores (`evaluate_every`).

    A scheduled epoch keeps its weights until it is scored (evaluation lags training). The JSON
    metadata and the scores stay, so the run's history is complete; resuming needs only the
    newest valid checkpoint, and the final weights are copied to `weights.npz` at the end.
    """
    if check_keep(keep) == 0:
        return []
    with_weights = checkpoint.recorded(folder.checkpoints, ".npz")
    scored = scored_epochs(folder)
    removed = []
    for epoch in sorted(e for e in with_weights if e <= newest - keep):
        skipped = epochs is not None and not is_scheduled(epoch, epochs, evaluate_every)
        if skipped or epoch in scored:
            weights, _ = checkpoint.checkpoint_paths(folder.checkpoints, epoch)
            locations.delete(weights)
            removed.append(weights)
    return removed


def epoch_record(folder: RunFolder, epoch: int) -> EpochRecord:
    """Epoch `epoch`'s scores when it was scored, else its training time with no scores."""
    record = read_json(folder.eval_path(epoch))
    if record is not None:
        return EpochRecord.from_eval(record)
    _, meta_path = checkpoint.checkpoint_paths(folder.checkpoints, epoch)
    return EpochRecord.unscored(epoch, float(checkpoint.read_metadata(meta_path)["train_seconds"]))


@dataclass(frozen=True)
class RunMetrics:
    """A finished run's `metrics.json`: its number of epochs and one record per epoch."""

    epochs: int
    records: tuple[EpochRecord, ...]

    @property
    def final(self) -> EpochRecord:
        return self.records[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "metrics": [record.to_dict() for record in self.records]}


def read_metrics(folder: RunFolder) -> RunMetrics:
    """The run's `metrics.json`, checked: CheckpointError naming the file when it is missing,
    unreadable or not one scored record per epoch (the run has not finished, or was damaged)."""
    path = folder.metrics_json
    try:
        summary = read_json(path)
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc}); run the flow again") from None
    if summary is None:
        raise CheckpointError(f"{path}: missing; the run has not finished")
    try:
        epochs, rows = summary["epochs"], summary["metrics"]
        records = tuple(EpochRecord.from_eval(row) for row in rows)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a metrics file ({exc!r} missing or wrong)") from None
    if [record.epoch for record in records] != list(range(1, epochs + 1)) or not records[-1].scored:
        raise CheckpointError(
            f"{path}: does not hold one record per epoch 1..{epochs}, the last scored"
        )
    return RunMetrics(epochs, records)


def finish_run(folder: RunFolder, epochs: int) -> list[EpochRecord]:
    """Write `metrics.json` and the final `weights.npz`; return one record per epoch.

    Epochs the evaluation schedule skipped are recorded with their training time and null
    scores; the final epoch must be scored.
    """
    metrics = [epoch_record(folder, epoch) for epoch in range(1, epochs + 1)]
    if not metrics[-1].scored:
        raise CheckpointError(f"{folder.eval_path(epochs)}: evaluation of epoch {epochs} missing")
    locations.write_json(folder.metrics_json, RunMetrics(epochs, tuple(metrics)).to_dict())
    weights_path, meta_path = checkpoint.checkpoint_paths(folder.checkpoints, epochs)
    if not checkpoint.is_valid(meta_path):
        raise CheckpointError(
            f"{meta_path}: the final checkpoint is missing or invalid; run the flow again to "
            "recompute it"
        )
    locations.write_bytes(folder.weights, locations.read_bytes(weights_path))
    return metrics
