"""The registry store: registering, rescoring, atomic and concurrent updates, promote/rollback."""

from __future__ import annotations

import fcntl
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mnistnn.config import NetworkConfig
from mnistnn.errors import RegistryError
from mnistnn.model.checkpoint import weights_bytes
from mnistnn.model.network import NeuralNetwork
from mnistnn.registry.store import ModelRegistry
from tests.registry.conftest import TEST_A, TEST_B, TRAIN, register, same_weights, tiny

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_first_model_becomes_champion(registry: ModelRegistry) -> None:
    decision = register(registry, 1, 0.5, run_dir="data/runs/x", flow_run_id="abc")
    assert decision.promoted
    assert decision.champion_version is None
    assert decision.champion_accuracy is None
    assert decision.reason.startswith("first model: v0001")
    (version,) = registry.versions()
    assert version.is_champion
    assert (version.version, version.accuracy, version.confident) == ("v0001", 0.5, 0.4)
    assert (version.run_dir, version.flow_run_id) == ("data/runs/x", "abc")
    assert (version.test_sha256, version.train_sha256) == (TEST_A, TRAIN)
    assert version.config == NetworkConfig(hidden_nodes=4, seed=1).to_dict()
    assert datetime.fromisoformat(version.created).utcoffset() is not None
    assert version.decision == decision


def test_changed_test_data_rescores_champion_once(registry: ModelRegistry) -> None:
    register(registry, 1, 0.90)
    scored: list[NeuralNetwork] = []

    def rescore(network: NeuralNetwork) -> float:
        scored.append(network)
        return 0.80

    decision = register(registry, 2, 0.85, test=TEST_B, rescore=rescore)
    assert len(scored) == 1
    assert same_weights(scored[0], tiny(1))
    assert decision.promoted
    assert decision.champion_rescored
    assert decision.champion_accuracy == 0.80
    assert "0.8500" in decision.reason
    assert "0.8000" in decision.reason
    assert "re-scored" in decision.reason
    old = registry.get("v0001")
    assert old.accuracy == 0.90
    assert old.scores == {TEST_A: 0.90, TEST_B: 0.80}
    # The new champion was scored on TEST_B already: no second re-score is needed.
    assert not register(registry, 3, 0.84, test=TEST_B, rescore=rescore).promoted
    assert len(scored) == 1


def test_rescored_champion_can_stay(registry: ModelRegistry) -> None:
    register(registry, 1, 0.90)
    decision = register(registry, 2, 0.93, test=TEST_B, rescore=lambda _network: 0.95)
    assert not decision.promoted
    assert decision.champion_accuracy == 0.95
    assert "0.9300" in decision.reason
    assert "0.9500" in decision.reason


def test_changed_test_data_without_rescore_is_an_error(registry: ModelRegistry) -> None:
    register(registry, 1, 0.90)
    with pytest.raises(RegistryError, match=r"other test data.*rescore"):
        register(registry, 2, 0.99, test=TEST_B)
    assert [v.version for v in registry.versions()] == ["v0001"]
    assert registry.store.list("v0002/") == []


@pytest.mark.parametrize(
    ("metrics", "min_delta", "message"),
    [
        ({"confident": 0.5}, 0.0, "must include 'accuracy'"),
        ({"accuracy": float("nan")}, 0.0, "accuracy in 0..1"),
        ({"accuracy": 1.5}, 0.0, "accuracy in 0..1"),
        ({"accuracy": 0.5, "mse": float("inf")}, 0.0, "JSON-able"),
        ({"accuracy": 0.5, "bad": object()}, 0.0, "JSON-able"),
        ({"accuracy": 0.5}, -0.1, "min_delta"),
    ],
)
def test_bad_arguments_are_rejected(
    registry: ModelRegistry, metrics: dict[str, Any], min_delta: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        registry.register(
            tiny(1), metrics=metrics, test_sha256=TEST_A, train_sha256=TRAIN, min_delta=min_delta
        )
    assert registry.store.list("") == []


def test_numpy_metrics_are_stored_as_plain_json(registry: ModelRegistry) -> None:
    metrics = {"accuracy": np.float32(0.5), "confusion": np.eye(2, dtype=np.int64)}
    registry.register(tiny(1), metrics=metrics, test_sha256=TEST_A, train_sha256=TRAIN)
    assert registry.get("v0001").metrics == {"accuracy": 0.5, "confusion": [[1, 0], [0, 1]]}


# -- idempotence and version numbers --------------------------------------------------------------
def test_register_is_idempotent_on_weights(registry: ModelRegistry) -> None:
    first = register(registry, 1, 0.9)
    register(registry, 2, 0.95)
    again = register(registry, 1, 0.7)  # same weights, other metrics: a flow re-run
    assert again == first
    assert [v.version for v in registry.versions()] == ["v0001", "v0002"]
    found = registry.find_by_weights(registry.get("v0001").weights_sha256)
    assert found is not None
    assert found.version == "v0001"
    assert registry.find_by_weights("0" * 64) is None


def test_orphan_folder_is_never_reused(local_registry: ModelRegistry) -> None:
    (local_registry.version_dir("v0001")).mkdir(parents=True)  # crashed before the commit
    assert register(local_registry, 1, 0.9).version == "v0002"
    assert register(local_registry, 2, 0.9).version == "v0003"


def test_orphan_version_object_is_never_reused(registry: ModelRegistry) -> None:
    registry.store.write_bytes("v0001/weights.npz", b"claimed, never committed")
    assert register(registry, 1, 0.9).version == "v0002"
    assert [v.version for v in registry.versions()] == ["v0002"]


def test_a_registration_lists_nothing(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next number comes from registry.json and conditional creates: no listing of every
    version's files (it grew with the history)."""
    register(registry, 1, 0.9)
    registry.store.write_bytes("v0002/weights.npz", b"claimed, never committed")

    def refused(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("the registry root was listed")

    monkeypatch.setattr(registry.store, "list", refused)
    assert register(registry, 2, 0.9).version == "v0003"


_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import mnistnn.registry.store
    from mnistnn.config import NetworkConfig
    from mnistnn.model.network import NeuralNetwork
    from mnistnn.registry.store import ModelRegistry

    from mnistnn.core.storage_local import LocalStore

    write = LocalStore.write_bytes

    def slow_write(self, key, data):
        time.sleep(0.02)  # widen the critical section so the two workers really collide
        write(self, key, data)

    LocalStore.write_bytes = slow_write
    root, offset, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    registry = ModelRegistry(root, lock_timeout=60)
    while not go.exists():
        time.sleep(0.001)
    for i in range(5):
        time.sleep(0.03)  # outside the lock: lets the other worker take its turn
        seed = offset + i
        registry.register(
            NeuralNetwork(NetworkConfig(hidden_nodes=4, seed=seed)),
            metrics={"accuracy": 0.5 + seed / 100},
            test_sha256="a" * 64,
            train_sha256="c" * 64,
        )
    """
)


def test_concurrent_registrations_never_lose_a_version(tmp_path: Path) -> None:
    root, go = tmp_path / "models", tmp_path / "go"
    script = tmp_path / "worker.py"
    script.write_text(_WORKER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), str(offset), str(go)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for offset in (0, 10)
    ]
    time.sleep(0.2)
    go.touch()
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr
    data = json.loads((root / "registry.json").read_text(encoding="utf-8"))
    assert data["versions"] == [f"v{n:04d}" for n in range(1, 11)]
    versions = ModelRegistry(root).versions()
    assert len({v.weights_sha256 for v in versions}) == 10
    champion = [v for v in versions if v.is_champion]
    assert len(champion) == 1
    assert champion[0].accuracy == max(v.accuracy for v in versions)
    assert not list(root.glob(".tmp-*"))


def test_lock_timeout_names_the_lock_file(local_registry: ModelRegistry) -> None:
    local_registry.registry_path.parent.mkdir(parents=True)
    blocked = ModelRegistry(local_registry.root, lock_timeout=0.1)
    with open(local_registry.lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with pytest.raises(RegistryError, match=r"\.lock: timed out"):
            register(blocked, 1, 0.9)
    assert register(blocked, 1, 0.9).promoted


# -- reading and corruption -----------------------------------------------------------------------
def test_missing_registry_is_empty(registry: ModelRegistry) -> None:
    assert registry.versions() == []
    assert registry.champion() is None
    with pytest.raises(RegistryError, match="no model trained yet: run `mnistnn train` first"):
        registry.load()
    with pytest.raises(RegistryError, match=r"unknown version v0001; known: none"):
        registry.get("v0001")


def test_unknown_version_lists_known(registry: ModelRegistry) -> None:
    register(registry, 1, 0.9)
    register(registry, 2, 0.8)
    with pytest.raises(RegistryError, match=r"unknown version v0009; known: v0001, v0002"):
        registry.load("v0009")


def test_weights_sha_mismatch_is_refused(registry: ModelRegistry) -> None:
    register(registry, 1, 0.9)
    assert same_weights(registry.load(), tiny(1))
    registry.store.write_bytes("v0001/weights.npz", weights_bytes(tiny(2)))  # wrong bytes
    with pytest.raises(RegistryError, match=r"v0001: .*sha256 does not match"):
        registry.load()


def test_registry_json_has_no_pickle_and_is_committed_last(registry: ModelRegistry) -> None:
    register(registry, 1, 0.9)
    weights = io.BytesIO(registry.store.read_bytes("v0001/weights.npz"))
    with np.load(weights, allow_pickle=False) as archive:
        assert set(archive.files) == {
            "w_input_hidden",
            "w_hidden_output",
            "config_json",
            "epochs_trained",
        }
    data = json.loads(registry.store.read_bytes("registry.json"))
    assert data["champion"] == "v0001"
    assert [entry["action"] for entry in data["history"]] == ["register"]


# -- promote / rollback ---------------------------------------------------------------------------
def test_promote_and_rollback(registry: ModelRegistry) -> None:
    for seed, accuracy in ((1, 0.90), (2, 0.91), (3, 0.92)):
        register(registry, seed, accuracy)
    assert registry.rollback().version == "v0002"
    assert registry.rollback().version == "v0001"
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback()
    promoted = registry.promote("v0003")
    assert promoted.version == "v0003"
    assert promoted.is_champion
    assert registry.rollback().version == "v0001"
    assert [v.version for v in registry.versions() if v.is_champion] == ["v0001"]
    assert same_weights(registry.load(), tiny(1))
    with pytest.raises(RegistryError, match="unknown version v0042"):
        registry.promote("v0042")
    history = json.loads(registry.store.read_bytes("registry.json"))["history"]
    assert [e["action"] for e in history] == [
        "register",
        "register",
        "register",
        "rollback",
        "rollback",
        "promote",
        "rollback",
    ]


def test_promote_current_champion_changes_nothing(registry: ModelRegistry) -> None:
    register(registry, 1, 0.9)
    before = registry.store.read_bytes("registry.json")
    assert registry.promote("v0001").is_champion
    assert registry.store.read_bytes("registry.json") == before


def test_hand_edited_invalid_json_is_named(registry: ModelRegistry) -> None:
    register(registry, 1, 0.9)
    good = registry.store.read_bytes("registry.json")
    registry.store.write_bytes("registry.json", b'{"versions": ["v0001",')
    with pytest.raises(RegistryError, match=r"models/registry\.json: registry is not valid JSON"):
        registry.versions()
    registry.store.write_bytes("registry.json", good)
    registry.store.write_bytes("v0001/meta.json", b"not json")
    with pytest.raises(RegistryError, match=r"v0001/meta\.json: unreadable version metadata"):
        registry.champion()


def test_racing_registrations_on_s3_get_distinct_versions(s3_url: str) -> None:
    """8 threads, each with its own client (as 8 machines would be), register at once."""
    accuracies = [0.80, 0.91, 0.85, 0.97, 0.88, 0.90, 0.83, 0.86]
    start = threading.Barrier(len(accuracies))
    decisions: dict[int, Any] = {}
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        registry = ModelRegistry(f"{s3_url}/models")
        start.wait()
        try:
            decisions[seed] = register(registry, seed, accuracies[seed])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(len(accuracies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    registry = ModelRegistry(f"{s3_url}/models")
    versions = registry.versions()
    assert [v.version for v in versions] == [f"v{n:04d}" for n in range(1, 9)]
    assert sorted(d.version for d in decisions.values()) == [v.version for v in versions]
    assert len({v.weights_sha256 for v in versions}) == 8
    champion = registry.champion()
    assert champion is not None
    assert champion.accuracy == max(accuracies)
    assert champion.version == decisions[3].version
    assert same_weights(registry.load(), tiny(3))
