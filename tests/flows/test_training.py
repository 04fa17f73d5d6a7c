"""The mnist-training flow under a Prefect test harness: completes, retries, resumes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flows import training as flow_module
from flows.tasks import ingest_task
from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.data.fast_csv import read_csv
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
    return flow_module.train_pipeline(**params)


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
    monkeypatch.setattr(flow_module.train_epoch_task, "retry_delay_seconds", 0)
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
        ({"learning_rate": -1.0}, "learning_rate must be a finite number > 0"),
        ({"hidden_nodes": 0}, "hidden_nodes must be >= 1, got 0"),
        ({"max_rejected_fraction": 2.0}, "max_rejected_fraction must be a number in 0..1"),
        ({"min_delta": -0.1}, "min_delta must be a finite number >= 0, got -0.1"),
        ({"keep_checkpoints": -1}, "keep_checkpoints must be >= 0"),
        ({"preset": "best", "epochs": 0}, "epochs must be >= 1, got 0"),
    ],
)
def test_bad_parameters_fail_before_any_work(
    small_csvs, tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run_flow(small_csvs, tmp_path, **overrides)
    assert not (tmp_path / "processed").exists()


def test_bad_parameter_type_is_rejected_by_prefect(small_csvs, tmp_path: Path) -> None:
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError, match="epochs"):
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
    monkeypatch.setattr(flow_module.publish_task, "retry_delay_seconds", 0)
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


def test_epoch_listener_is_scoped_to_its_block(small_csvs, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    with flow_module.epoch_listener(lambda record, epochs: seen.append((record.epoch, epochs))):
        run_flow(small_csvs, tmp_path, epochs=2, register_model=False)
    assert seen == [(1, 2), (2, 2)]
    run_flow(small_csvs, tmp_path, epochs=2, register_model=False)  # outside: not called
    assert seen == [(1, 2), (2, 2)]
    assert flow_module._LISTENERS == []
