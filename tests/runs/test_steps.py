"""The pipeline's steps without Prefect: resume, idempotency, locks, metrics."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mnistnn import CheckpointError, NetworkConfig, NeuralNetwork
from mnistnn.data.ingest import ingest_csv
from mnistnn.model.checkpoint import checkpoint_paths, load_checkpoint, load_weights
from mnistnn.runs import steps as training
from mnistnn.runs.folders import open_run, run_folder, run_key, run_lock

CONFIG = NetworkConfig(hidden_nodes=16)


@pytest.fixture
def run(tmp_path: Path, small_csvs: tuple[Path, Path]):
    train = ingest_csv(small_csvs[0], tmp_path / "processed")
    test = ingest_csv(small_csvs[1], tmp_path / "processed")
    folder = run_folder(tmp_path / "runs", CONFIG, train.sha256, test.sha256)
    open_run(folder, CONFIG, train.sha256, test.sha256)
    return folder, train.parquet, test.parquet


def test_run_key_is_stable_and_sensitive() -> None:
    key = run_key(CONFIG, "a" * 64, "b" * 64)
    assert key == run_key(NetworkConfig(hidden_nodes=16), "a" * 64, "b" * 64)
    assert len(key) == 16
    assert key != run_key(CONFIG, "a" * 64, "c" * 64)
    assert key != run_key(NetworkConfig(hidden_nodes=17), "a" * 64, "b" * 64)


def test_epochs_chain_and_equal_uninterrupted_training(run) -> None:
    folder, train_parquet, _ = run
    for epoch in (1, 2, 3):
        outcome = training.train_epoch(folder, epoch, CONFIG, train_parquet)
        assert not outcome.reused
    pixels, labels = training.load_arrays(train_parquet)
    direct = NeuralNetwork(CONFIG)
    for _ in range(3):
        direct.train_epoch(pixels, labels)
    resumed, record = load_checkpoint(checkpoint_paths(folder.checkpoints, 3)[1])
    np.testing.assert_array_equal(resumed.w_input_hidden, direct.w_input_hidden)
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]
    assert training.resume_point(folder) == 3
    again = training.train_epoch(folder, 3, CONFIG, train_parquet)
    assert again.reused


def test_evaluate_finish_and_reuse(run) -> None:
    folder, train_parquet, test_parquet = run
    training.train_epoch(folder, 1, CONFIG, train_parquet)
    record = training.evaluate_epoch(folder, 1, test_parquet)
    assert 0.0 <= record["accuracy"] <= 1.0 and len(record["confusion"]) == 10
    mtime = folder.eval_path(1).stat().st_mtime_ns
    assert training.evaluate_epoch(folder, 1, test_parquet) == record
    assert folder.eval_path(1).stat().st_mtime_ns == mtime
    metrics = training.finish_run(folder, 1)
    assert metrics[0].accuracy == record["accuracy"]
    assert load_weights(folder.weights).config == CONFIG
    line = metrics[0].line(15)
    assert line.startswith("epoch 1/15  accuracy ") and " confident " in line


def test_missing_previous_checkpoint(run) -> None:
    folder, train_parquet, _ = run
    with pytest.raises(CheckpointError, match="checkpoint of epoch 1 is missing or invalid"):
        training.train_epoch(folder, 2, CONFIG, train_parquet)
    with pytest.raises(ValueError, match="epoch must be >= 1"):
        training.train_epoch(folder, 0, CONFIG, train_parquet)


def test_divergence_is_reported_and_not_saved(run, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, train_parquet, _ = run

    def diverge(self: NeuralNetwork, pixels: np.ndarray, labels: np.ndarray, **_: object) -> None:
        self.w_hidden_output[0, 0] = np.inf

    monkeypatch.setattr(NeuralNetwork, "train_epoch", diverge)
    with pytest.raises(ValueError, match=r"NaN or infinite; lower the learning rate \(0.05\)"):
        training.train_epoch(folder, 1, CONFIG, train_parquet)
    assert training.resume_point(folder) == 0


def test_corrupt_latest_checkpoint_moves_resume_point_back(run) -> None:
    folder, train_parquet, _ = run
    training.train_epoch(folder, 1, CONFIG, train_parquet)
    training.train_epoch(folder, 2, CONFIG, train_parquet)
    weights, _ = checkpoint_paths(folder.checkpoints, 2)
    weights.write_bytes(weights.read_bytes()[:-10])
    assert training.resume_point(folder) == 1


def test_fresh_clears_the_run(run) -> None:
    folder, train_parquet, _ = run
    training.train_epoch(folder, 1, CONFIG, train_parquet)
    config_json = folder.run_json.read_text()
    open_run(folder, CONFIG, "x", "y", fresh=True)
    assert training.resume_point(folder) == 0
    assert folder.run_json.read_text() != config_json


def test_lock_makes_a_second_run_wait(tmp_path: Path) -> None:
    folder = run_folder(tmp_path, CONFIG, "a", "b")
    order: list[str] = []

    def second() -> None:
        with run_lock(folder):
            order.append("second")

    with run_lock(folder):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]


def test_pruning_keeps_metadata_scores_and_the_newest_weights(run) -> None:
    folder, train_parquet, test_parquet = run
    for epoch in (1, 2, 3):
        training.train_epoch(folder, epoch, CONFIG, train_parquet)
    training.evaluate_epoch(folder, 1, test_parquet)
    training.evaluate_epoch(folder, 3, test_parquet)
    assert training.prune_checkpoints(folder, 3, keep=0) == []
    removed = training.prune_checkpoints(folder, 3, keep=1)
    # epoch 2 is not evaluated yet, so its weights stay whatever `keep` says
    assert [path.name for path in removed] == ["epoch-0001.npz"]
    assert checkpoint_paths(folder.checkpoints, 1)[1].exists()
    first = training.evaluate_epoch(folder, 1, test_parquet)  # from its record, no weights
    assert first["epoch"] == 1
    assert training.resume_point(folder) == 3
    training.evaluate_epoch(folder, 2, test_parquet)
    assert training.finish_run(folder, 3)[2].epoch == 3
    training.prune_checkpoints(folder, 3, keep=1)
    with pytest.raises(CheckpointError, match="final checkpoint is missing or invalid"):
        training.finish_run(folder, 2)


def test_checkpoints_carry_the_scores_known_so_far(run) -> None:
    folder, train_parquet, test_parquet = run
    training.train_epoch(folder, 1, CONFIG, train_parquet)
    first = training.evaluate_epoch(folder, 1, test_parquet)
    training.train_epoch(folder, 2, CONFIG, train_parquet)
    training.train_epoch(folder, 3, CONFIG, train_parquet)  # epoch 2 not scored yet
    training.evaluate_epoch(folder, 2, test_parquet)
    training.train_epoch(folder, 4, CONFIG, train_parquet)

    def carried(epoch: int) -> list[dict]:
        _, record = load_checkpoint(checkpoint_paths(folder.checkpoints, epoch)[1])
        return record["metrics"]

    assert carried(1) == []
    assert carried(3) == [{k: first[k] for k in ("epoch", "accuracy", "confident", "mse")}]
    assert [m["epoch"] for m in carried(4)] == [1, 2]
    _, record = load_checkpoint(checkpoint_paths(folder.checkpoints, 4)[1])
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3, 4]


def test_schedule_scores_every_kth_epoch_and_always_the_last() -> None:
    assert [e for e in range(1, 6) if training.is_scheduled(e, 5, 2)] == [2, 4, 5]
    assert [e for e in range(1, 6) if training.is_scheduled(e, 5, 1)] == [1, 2, 3, 4, 5]
    assert [e for e in range(1, 4) if training.is_scheduled(e, 3, 10)] == [3]


def test_gaps_are_recorded_pruned_and_resume_stays_exact(run) -> None:
    folder, train_parquet, test_parquet = run
    for epoch in (1, 2, 3):
        training.train_epoch(folder, epoch, CONFIG, train_parquet)
    training.evaluate_epoch(folder, 2, test_parquet)
    # epoch 1 is never scored under the schedule: its weights go; epoch 2 is scored
    removed = training.prune_checkpoints(folder, 3, 1, epochs=5, evaluate_every=2)
    assert [path.name for path in removed] == ["epoch-0001.npz", "epoch-0002.npz"]
    assert training.resume_point(folder) == 3
    for epoch in (4, 5):
        training.train_epoch(folder, epoch, CONFIG, train_parquet)
    # epoch 4 is scheduled and not scored yet: it keeps its weights until it is
    assert training.prune_checkpoints(folder, 5, 1, epochs=5, evaluate_every=2) == [
        checkpoint_paths(folder.checkpoints, 3)[0]
    ]
    training.evaluate_epoch(folder, 4, test_parquet)
    with pytest.raises(CheckpointError, match="evaluation of epoch 5 missing"):
        training.finish_run(folder, 5)
    training.evaluate_epoch(folder, 5, test_parquet)
    metrics = training.finish_run(folder, 5)
    assert [m.epoch for m in metrics] == [1, 2, 3, 4, 5]
    assert [m.scored for m in metrics] == [False, True, False, True, True]
    assert metrics[0].accuracy is None and metrics[0].train_seconds > 0
    assert metrics[0].line(5).startswith("epoch 1/5  not scored  train ")
    stored = json.loads(folder.metrics_json.read_text())["metrics"]
    assert [row["accuracy"] is None for row in stored] == [True, False, True, False, False]
    # a denser schedule later: epochs 1 and 3 lost their weights, so nothing can score them
    assert training.unscorable(folder, 5, 5, 1) == [1, 3]
    assert training.unscorable(folder, 5, 5, 2) == []
    pixels, labels = training.load_arrays(train_parquet)
    direct = NeuralNetwork(CONFIG)
    for _ in range(5):
        direct.train_epoch(pixels, labels)
    np.testing.assert_array_equal(
        load_weights(folder.weights).w_input_hidden, direct.w_input_hidden
    )


def test_an_epoch_asks_the_store_about_evals_once_not_once_per_earlier_epoch(
    run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sparse schedule leaves most epochs without an eval file; on S3 each look-up of a missing
    one is a request, so the n-th epoch must not look up all n - 1 (one listing finds them)."""
    from mnistnn.core.storage_local import LocalStore

    folder, train_parquet, test_parquet = run
    for epoch in range(1, 9):
        training.train_epoch(folder, epoch, CONFIG, train_parquet)
        if epoch % 4 == 0:
            training.evaluate_epoch(folder, epoch, test_parquet)
    asked: list[str] = []
    for method in ("exists", "read_bytes", "list"):
        original = getattr(LocalStore, method)

        def counted(self, key: str = "", _original=original, _method=method):
            asked.append(f"{_method} {self.root.name}/{key}")
            return _original(self, key)

        monkeypatch.setattr(LocalStore, method, counted)
    training.train_epoch(folder, 9, CONFIG, train_parquet)
    training.prune_checkpoints(folder, 9, 2, epochs=12, evaluate_every=4)
    about_evals = [request for request in asked if " evals/" in request]
    # a listing of evals/ in train_epoch and in prune; epoch 8's scores are read once (the
    # checkpoint of epoch 8 was written before epoch 8 was scored, so it does not carry them)
    assert len(about_evals) <= 3, about_evals
    _, record = load_checkpoint(checkpoint_paths(folder.checkpoints, 9)[1])
    assert [m["epoch"] for m in record["metrics"]] == [4, 8]
    kept = sorted(p.name for p in folder.checkpoints.iterdir() if p.suffix == ".npz")
    assert kept == ["epoch-0008.npz", "epoch-0009.npz"]


def test_metrics_json_has_one_reader_with_one_error_naming_the_file(run) -> None:
    folder, train_parquet, test_parquet = run
    with pytest.raises(CheckpointError, match=r"metrics\.json: missing; the run has not finished"):
        training.read_metrics(folder)
    training.train_epoch(folder, 1, CONFIG, train_parquet)
    training.evaluate_epoch(folder, 1, test_parquet)
    written = training.finish_run(folder, 1)
    read = training.read_metrics(folder)
    assert read.epochs == 1 and list(read.records) == written and read.final == written[-1]
    path = folder.metrics_json
    for damaged in ("{not json", '{"epochs": 1}', '{"epochs": 2, "metrics": []}'):
        path.write_text(damaged, encoding="utf-8")
        with pytest.raises(CheckpointError) as info:
            training.read_metrics(folder)
        assert str(info.value).startswith(f"{path}: ")
        assert "\n" not in str(info.value)
