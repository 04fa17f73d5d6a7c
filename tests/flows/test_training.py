"""The mnist-training flow under a Prefect test harness: completes, retries, resumes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flows import training as flow_module
from flows import training_steps, training_tasks
from flows.tasks import ingest_task
from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.data.fast_csv import read_csv
from mnistnn.errors import ConfigError
from mnistnn.model.checkpoint import checkpoint_paths, load_weights
from mnistnn.runs import steps as training

pytestmark = pytest.mark.usefixtures("prefect_harness")

HIDDEN = 20


def run_flow(small_csvs: tuple[Path, Path], data_dir: Path, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "train_csv": str(small_csvs[0]),
        "test_csv": str(small_csvs[1]),
        "hidden_nodes": HIDDEN,
        "epochs": 3,
        "data_dir": str(data_dir),
        "publish_report": False,
    }
    params.update(overrides)
    return flow_module.train_pipeline(**params).to_dict()


def direct_weights(small_csvs: tuple[Path, Path], epochs: int) -> NeuralNetwork:
    pixels, labels = read_csv(small_csvs[0])
    network = NeuralNetwork(NetworkConfig(hidden_nodes=HIDDEN))
    for _ in range(epochs):
        network.train_epoch(pixels, labels)
    return network


def weights_sha(run_dir: str) -> str:
    return hashlib.sha256((Path(run_dir) / "weights.npz").read_bytes()).hexdigest()


def test_flow_completes_and_matches_the_library(small_csvs, tmp_path: Path) -> None:
    result = run_flow(small_csvs, tmp_path)
    run_dir = Path(result["run_dir"])
    assert result["trained_epochs"] == [1, 2, 3]
    assert [row["epoch"] for row in result["metrics"]] == [1, 2, 3]
    for epoch in (1, 2, 3):
        weights, meta = checkpoint_paths(run_dir / "checkpoints", epoch)
        assert weights.exists() and meta.exists()
    assert (run_dir / "metrics.json").exists()
    final = load_weights(run_dir / "weights.npz")
    np.testing.assert_array_equal(
        final.w_input_hidden, direct_weights(small_csvs, 3).w_input_hidden
    )
    assert result["decision"]["promoted"] is True
    assert result["flow_run_id"]


def test_finished_run_trains_nothing_and_more_epochs_continue(small_csvs, tmp_path: Path) -> None:
    first = run_flow(small_csvs, tmp_path, epochs=2)
    again = run_flow(small_csvs, tmp_path, epochs=2)
    assert again["trained_epochs"] == []
    assert again["metrics"] == first["metrics"]
    longer = run_flow(small_csvs, tmp_path, epochs=3)
    assert longer["trained_epochs"] == [3]
    assert longer["run_dir"] == first["run_dir"]


def test_transient_error_is_retried_and_result_is_unchanged(
    small_csvs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = run_flow(small_csvs, tmp_path / "clean", epochs=2)
    real = training.train_epoch
    calls: list[int] = []

    def flaky(folder, epoch, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(epoch)
        if epoch == 2 and calls.count(2) == 1:
            raise OSError("disk hiccup")
        return real(folder, epoch, *args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", flaky)
    monkeypatch.setattr(training_tasks.train_epoch_task, "retry_delay_seconds", 0)
    result = run_flow(small_csvs, tmp_path / "flaky", epochs=2)
    assert calls == [1, 2, 2]
    assert weights_sha(result["run_dir"]) == weights_sha(clean["run_dir"])


def test_value_error_is_not_retried(
    small_csvs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def broken(folder, epoch, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(epoch)
        raise ValueError("a bug")

    monkeypatch.setattr(training, "train_epoch", broken)
    with pytest.raises(ValueError, match="a bug"):
        run_flow(small_csvs, tmp_path, epochs=2)
    assert calls == [1]


def test_corrupted_checkpoint_is_redone(small_csvs, tmp_path: Path) -> None:
    first = run_flow(small_csvs, tmp_path, epochs=3)
    weights, _ = checkpoint_paths(Path(first["run_dir"]) / "checkpoints", 3)
    data = bytearray(weights.read_bytes())
    data[100] ^= 0x55
    weights.write_bytes(bytes(data))
    again = run_flow(small_csvs, tmp_path, epochs=3)
    assert again["trained_epochs"] == [3]
    assert weights_sha(again["run_dir"]) == weights_sha(first["run_dir"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"learning_rate": -1.0}, "learning_rate must be > 0.0, got -1.0"),
        ({"hidden_nodes": 0}, "hidden_nodes must be >= 1, got 0"),
        ({"max_rejected_fraction": 2.0}, "max_rejected_fraction must be a number in 0..1"),
        ({"min_delta": -0.1}, "min_delta must be a finite number >= 0, got -0.1"),
        ({"keep_checkpoints": -1}, "keep_checkpoints must be >= 0"),
        ({"preset": "best", "epochs": 0}, "epochs must be >= 1, got 0"),
        ({"evaluate_every": 0}, "^evaluate_every must be >= 1, got 0$"),
    ],
)
def test_bad_parameters_fail_before_any_work(
    small_csvs, tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run_flow(small_csvs, tmp_path, **overrides)
    assert not (tmp_path / "processed").exists()


def test_bad_parameter_type_is_rejected_in_one_line(small_csvs, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^epochs: input should be a valid integer, got 'many'$"):
        run_flow(small_csvs, tmp_path, epochs="many")


def test_ingest_task_logic_without_the_engine(small_csvs, tmp_path: Path) -> None:
    summary = ingest_task.fn("train", str(small_csvs[0]), str(tmp_path), 0.0)
    assert summary.rows_accepted == 2000 and summary.source_name == small_csvs[0].name


def test_rerun_says_the_model_was_already_registered(small_csvs, tmp_path: Path) -> None:
    first = run_flow(small_csvs, tmp_path, epochs=1)
    again = run_flow(small_csvs, tmp_path, epochs=1)
    assert again["decision"]["version"] == first["decision"]["version"]
    assert again["decision"]["reason"].startswith(
        f"already registered as {first['decision']['version']} (then: first model"
    )


def _artifacts(flow_run_id: str) -> dict[str, list[Any]]:
    """The flow run's artifacts by key, read through the Prefect client."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    by_key: dict[str, list[Any]] = {}
    for artifact in found:
        by_key.setdefault(artifact.key or "", []).append(artifact)
    return by_key


def test_publish_failure_is_retried_and_artifacts_exist_once(
    small_csvs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.publish

    real = flows.publish.publish_run
    attempts: list[int] = []

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("artifact store unavailable")
        return real(*args, **kwargs)

    monkeypatch.setattr(flows.publish, "publish_run", flaky)
    monkeypatch.setattr(training_tasks.publish_task, "retry_delay_seconds", 0)
    result = run_flow(small_csvs, tmp_path, epochs=2, publish_report=True)
    assert len(attempts) == 2
    by_key = _artifacts(result["flow_run_id"])
    for key in ("mnist-epoch-metrics", "mnist-training-report", "mnist-run-folder"):
        assert len(by_key[key]) == 1, key
    table = by_key["mnist-epoch-metrics"][0].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert [row["epoch"] for row in rows] == [1, 2]
    assert [row["accuracy"] for row in rows] == [round(m["accuracy"], 4) for m in result["metrics"]]
    assert rows[1]["running_mean_accuracy"] == round(
        (result["metrics"][0]["accuracy"] + result["metrics"][1]["accuracy"]) / 2, 4
    )
    report = by_key["mnist-training-report"][0].data
    assert report.count("data:image/png;base64,") == 6
    assert "first model" in report
    run_dir = Path(result["run_dir"])
    assert (run_dir / "report.md").read_text() == report
    assert len(list((run_dir / "figures").glob("*.png"))) == 6


def test_keep_checkpoints_prunes_old_weights_but_not_history(small_csvs, tmp_path: Path) -> None:
    result = run_flow(small_csvs, tmp_path, epochs=4, keep_checkpoints=1)
    checkpoints = Path(result["run_dir"]) / "checkpoints"
    assert (checkpoints / "epoch-0004.npz").exists()
    assert [path.name for path in checkpoints.glob("*.npz")] == ["epoch-0004.npz"]
    assert len(list(checkpoints.glob("*.json"))) == 4
    again = run_flow(small_csvs, tmp_path, epochs=4, keep_checkpoints=1)
    assert again["trained_epochs"] == []
    assert again["metrics"] == result["metrics"]


def test_a_schedule_leaves_gaps_and_a_denser_one_scores_what_it_can(
    small_csvs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sparse = run_flow(
        small_csvs, tmp_path, epochs=4, evaluate_every=4, keep_checkpoints=2, publish_report=True
    )
    run_dir = Path(sparse["run_dir"])
    assert [row["accuracy"] is None for row in sparse["metrics"]] == [True, True, True, False]
    assert all(row["train_seconds"] > 0 for row in sparse["metrics"])
    assert sorted(path.name for path in (run_dir / "evals").glob("*.json")) == ["epoch-0004.json"]
    # epochs 1-2 are outside the keep window and never scored: pruned; epoch 3 is kept
    assert sorted(path.name for path in (run_dir / "checkpoints").glob("*.npz")) == [
        "epoch-0003.npz",
        "epoch-0004.npz",
    ]
    assert "| 1 | not scored |" in (run_dir / "report.md").read_text()
    # the schedule is not part of the run key: a denser one reuses the run and trains nothing
    dense = run_flow(small_csvs, tmp_path, epochs=4, evaluate_every=1, keep_checkpoints=2)
    assert dense["run_dir"] == sparse["run_dir"] and dense["trained_epochs"] == []
    assert [row["accuracy"] is None for row in dense["metrics"]] == [True, True, False, False]
    assert dense["metrics"][3] == sparse["metrics"][3]
    assert weights_sha(dense["run_dir"]) == weights_sha(sparse["run_dir"])
    assert "epoch(s) 1, 2: never scored and their weights were pruned" in caplog.text


def test_explicit_parameters_win_over_the_preset(small_csvs, tmp_path: Path) -> None:
    """A deployment run or the UI form with preset="best", hidden_nodes=30 trains 30 nodes."""
    result = run_flow(
        small_csvs, tmp_path, preset="best", hidden_nodes=30, epochs=1, publish_report=True
    )
    report = (Path(result["run_dir"]) / "report.md").read_text()
    assert "Resolved from preset best; explicitly set: epochs, hidden_nodes." in report
    run = json.loads((Path(result["run_dir"]) / "run.json").read_text())
    assert run["config"]["hidden_nodes"] == 30
    assert run["config"]["output"] == "softmax"  # the rest of the preset
    assert result["settings"]["explicit"] == ["epochs", "hidden_nodes"]


def test_fewer_epochs_answer_from_the_longer_run_without_touching_it(
    small_csvs, tmp_path: Path
) -> None:
    longer = run_flow(small_csvs, tmp_path, epochs=4, keep_checkpoints=2, register_model=False)
    root = Path(longer["run_dir"])
    before = {name: (root / name).read_bytes() for name in ("weights.npz", "metrics.json")}

    kept = run_flow(small_csvs, tmp_path, epochs=3, keep_checkpoints=2, register_model=False)
    assert kept["trained_epochs"] == []  # epoch 3's weights are kept: nothing to train
    assert Path(kept["run_dir"]).parent == root
    assert [row["accuracy"] for row in kept["metrics"]] == [
        row["accuracy"] for row in longer["metrics"][:3]
    ]
    assert np.array_equal(
        load_weights(Path(kept["run_dir"]) / "weights.npz").w_input_hidden,
        direct_weights(small_csvs, 3).w_input_hidden,
    )

    pruned = run_flow(small_csvs, tmp_path, epochs=1, keep_checkpoints=2, register_model=False)
    assert pruned["trained_epochs"] == [1]  # epoch 1's weights were pruned: recomputed
    assert np.array_equal(
        load_weights(Path(pruned["run_dir"]) / "weights.npz").w_input_hidden,
        direct_weights(small_csvs, 1).w_input_hidden,
    )
    assert pruned["metrics"][0]["accuracy"] == longer["metrics"][0]["accuracy"]
    assert {name: (root / name).read_bytes() for name in before} == before
    assert len(list((root / "checkpoints").glob("*.json"))) == 4


def test_threads_reach_every_epoch(
    small_csvs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int | None] = []
    train_epoch = training.train_epoch

    def recording(*args: Any, threads: int | None = None) -> Any:
        seen.append(threads)
        return train_epoch(*args, threads=threads)

    monkeypatch.setattr(training, "train_epoch", recording)
    result = run_flow(small_csvs, tmp_path, epochs=2, threads=1, register_model=False)
    assert seen == [1, 1] and result["parameters"]["threads"] == 1
    assert weights_sha(result["run_dir"]) == weights_sha(
        run_flow(small_csvs, tmp_path / "auto", epochs=2, register_model=False)["run_dir"]
    )  # the same weights with the engine's own choice


def test_epoch_listener_is_scoped_to_its_block(small_csvs, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    with flow_module.epoch_listener(lambda record, epochs: seen.append((record.epoch, epochs))):
        run_flow(small_csvs, tmp_path, epochs=2, register_model=False)
    assert seen == [(1, 2), (2, 2)]
    run_flow(small_csvs, tmp_path, epochs=2, register_model=False)  # outside: not called
    assert seen == [(1, 2), (2, 2)]
    assert training_steps._LISTENERS == []


# -- the inbox: snapshots, drift, warm start ----------------------------------------------------
def drop_batch(data_dir: Path, name: str, pixels: np.ndarray, labels: np.ndarray) -> Path:
    """A finished batch in the inbox (modified a minute ago, so it has settled)."""
    import os
    import time

    from tests.conftest import write_mnist_csv

    incoming = data_dir / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    path = write_mnist_csv(incoming / name, pixels, labels)
    os.utime(path, (time.time() - 60, time.time() - 60))
    return path


def test_empty_inbox_is_the_run_of_before(small_csvs, tmp_path: Path) -> None:
    from mnistnn.core.files import sha256_file
    from mnistnn.runs.folders import run_key

    result = run_flow(small_csvs, tmp_path, epochs=2)
    base = sha256_file(small_csvs[0])
    key = run_key(NetworkConfig(hidden_nodes=HIDDEN), base, sha256_file(small_csvs[1]))
    assert Path(result["run_dir"]).name == key
    assert result["snapshot"]["sha256"] == base and result["snapshot"]["batches"] == []
    final = load_weights(Path(result["run_dir"]) / "weights.npz")
    np.testing.assert_array_equal(
        final.w_input_hidden, direct_weights(small_csvs, 2).w_input_hidden
    )
    assert not (tmp_path / "snapshots").exists()


def test_a_batch_makes_a_new_run_and_no_new_data_trains_nothing(
    small_csvs, tmp_path: Path, mnist_train
) -> None:
    from mnistnn.core.files import sha256_file
    from mnistnn.data.snapshot import load_snapshot

    first = run_flow(small_csvs, tmp_path, epochs=2)
    path = drop_batch(tmp_path, "batch-a.csv", mnist_train[0][5000:5600], mnist_train[1][5000:5600])
    second = run_flow(small_csvs, tmp_path, epochs=2)
    assert second["run_dir"] != first["run_dir"] and second["trained_epochs"] == [1, 2]
    snapshot = second["snapshot"]
    [batch] = snapshot["batches"]
    assert batch["file"] == "batch-a.csv" and batch["sha256"] == sha256_file(path)
    assert (batch["status"], batch["accepted"], batch["rejected"]) == ("accepted", 600, 0)
    assert isinstance(batch["champion_accuracy"], float) and batch["drift"] in (True, False)
    assert "drift_reason" in batch
    assert snapshot["train_rows"] == 2000 + batch["train_rows"] and 0 < batch["recent_rows"] < 120
    assert snapshot["recent"]["model_accuracy"] is not None
    # the lineage names the batch, and training read the snapshot's rows
    checkpoint = json.loads(
        (Path(second["run_dir"]) / "checkpoints" / "epoch-0001.json").read_text()
    )
    assert checkpoint["lineage"]["train"]["sha256"] == snapshot["sha256"]
    assert "batch-a.csv" in json.dumps(checkpoint["lineage"]["snapshot"])
    pixels, labels = load_snapshot(snapshot["manifest"])
    direct = NeuralNetwork(NetworkConfig(hidden_nodes=HIDDEN))
    for _ in range(2):
        direct.train_epoch(pixels, labels)
    final = load_weights(Path(second["run_dir"]) / "weights.npz")
    np.testing.assert_array_equal(final.w_input_hidden, direct.w_input_hidden)
    # nothing new: nothing retrained
    third = run_flow(small_csvs, tmp_path, epochs=2)
    assert third["run_dir"] == second["run_dir"] and third["trained_epochs"] == []
    assert third["snapshot"]["sha256"] == snapshot["sha256"]


def test_a_refused_batch_is_reported_and_not_ingested_again(
    small_csvs, tmp_path: Path, mnist_train, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mnistnn.data.inbox as inbox

    labels = mnist_train[1][:60].astype(np.int64)
    labels[4] = 12
    drop_batch(tmp_path, "bad.csv", mnist_train[0][:60], labels)
    drop_batch(tmp_path, "good.csv", mnist_train[0][7000:7300], mnist_train[1][7000:7300])
    result = run_flow(small_csvs, tmp_path, epochs=1, publish_report=True)
    by_file = {batch["file"]: batch for batch in result["snapshot"]["batches"]}
    assert by_file["bad.csv"]["status"] == "refused" and "label 12" in by_file["bad.csv"]["reason"]
    assert by_file["good.csv"]["status"] == "accepted"
    report = (Path(result["run_dir"]) / "report.md").read_text()
    assert "bad.csv" in report and "refused" in report
    artifacts = _artifacts(result["flow_run_id"])
    table = artifacts["mnist-new-data"][0].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert sorted(row["file"] for row in rows) == ["bad.csv", "good.csv"]

    calls: list[object] = []
    real = inbox.ingest_location
    monkeypatch.setattr(inbox, "ingest_location", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = run_flow(small_csvs, tmp_path, epochs=1)
    assert calls == [] and again["trained_epochs"] == []
    assert {b["file"]: b["status"] for b in again["snapshot"]["batches"]} == {
        "bad.csv": "refused",
        "good.csv": "accepted",
    }


def test_warm_start_shape_mismatch_is_a_clear_error(small_csvs, tmp_path: Path) -> None:

    with pytest.raises(ConfigError, match="warm_start needs a champion"):
        run_flow(small_csvs, tmp_path, epochs=1, warm_start=True)
    run_flow(small_csvs, tmp_path, epochs=1)
    with pytest.raises(
        ConfigError, match=r"\(20, 784\) and \(10, 20\).*\(30, 784\) and \(10, 30\)"
    ):
        run_flow(small_csvs, tmp_path, epochs=1, warm_start=True, hidden_nodes=30)


def test_warm_start_starts_from_the_champion_in_its_own_folder(small_csvs, tmp_path: Path) -> None:
    scratch = run_flow(small_csvs, tmp_path, epochs=1)
    warm = run_flow(small_csvs, tmp_path, epochs=1, warm_start=True)
    assert warm["run_dir"] != scratch["run_dir"] and warm["trained_epochs"] == [1]
    assert warm["warm_start"]["version"] == scratch["decision"]["version"]
    champion = load_weights(Path(scratch["run_dir"]) / "weights.npz")
    pixels, labels = read_csv(small_csvs[0])
    champion.train_epoch(pixels, labels)
    final = load_weights(Path(warm["run_dir"]) / "weights.npz")
    np.testing.assert_array_equal(final.w_input_hidden, champion.w_input_hidden)
    checkpoint = json.loads((Path(warm["run_dir"]) / "checkpoints" / "epoch-0001.json").read_text())
    assert checkpoint["lineage"]["warm_start"]["version"] == scratch["decision"]["version"]


def test_resume_after_a_failure_is_bit_identical_with_batches(
    small_csvs, tmp_path: Path, mnist_train, monkeypatch: pytest.MonkeyPatch
) -> None:
    for data_dir in (tmp_path / "clean", tmp_path / "failed"):
        drop_batch(data_dir, "a.csv", mnist_train[0][9000:9400], mnist_train[1][9000:9400])
        drop_batch(data_dir, "b.csv.gz", mnist_train[0][9400:9700], mnist_train[1][9400:9700])
    clean = run_flow(small_csvs, tmp_path / "clean", epochs=3, warm_start=False)
    real = training.train_epoch

    def dies_after_two(folder, epoch, *args, **kwargs):  # type: ignore[no-untyped-def]
        if epoch == 3:
            raise RuntimeError("killed")
        return real(folder, epoch, *args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", dies_after_two)
    with pytest.raises(RuntimeError, match="killed"):
        run_flow(small_csvs, tmp_path / "failed", epochs=3)
    monkeypatch.setattr(training, "train_epoch", real)
    resumed = run_flow(small_csvs, tmp_path / "failed", epochs=3)
    assert resumed["trained_epochs"] == [3]
    assert resumed["snapshot"]["sha256"] == clean["snapshot"]["sha256"]
    assert len(resumed["snapshot"]["batches"]) == 2
    assert weights_sha(resumed["run_dir"]) == weights_sha(clean["run_dir"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"drift_threshold": 2.0}, "drift_threshold must be a number in 0..1"),
        ({"recent_fraction": 0.9}, "recent_fraction must be a number in 0..0.5"),
        ({"settle_seconds": -1.0}, "settle_seconds must be a finite number >= 0"),
    ],
)
def test_bad_inbox_parameters_fail_before_any_work(
    small_csvs, tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run_flow(small_csvs, tmp_path, **overrides)
    assert not (tmp_path / "processed").exists()
