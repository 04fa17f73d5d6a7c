"""Two models that differ only in their seed: seed luck is not a promotion under `significant`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.registry.gate import Gate, Labelled
from mnistnn.registry.policy import PromotionPolicy
from mnistnn.registry.store import ModelRegistry
from mnistnn.report.promotion import section


@pytest.fixture(scope="module")
def two_seeds(mnist_train, mnist_test) -> tuple[NeuralNetwork, NeuralNetwork, Labelled]:
    """Seeds 0 and 1, one epoch on the same 3,000 rows; the first 2,000 test digits."""
    networks = []
    for seed in (0, 1):
        network = NeuralNetwork(NetworkConfig(hidden_nodes=40, seed=seed))
        network.train_epoch(mnist_train[0][:3000], mnist_train[1][:3000])
        networks.append(network)
    data = Labelled("the test set", mnist_test[0][:2000], mnist_test[1][:2000])
    return networks[0], networks[1], data


def register_both(folder: Path, policy: str, two_seeds) -> tuple[dict, dict, ModelRegistry]:
    first, second, data = two_seeds
    registry = ModelRegistry(folder)
    rule = PromotionPolicy(policy)  # type: ignore[arg-type]
    decisions = []
    for network in (first, second):
        decision = registry.register(
            network,
            metrics={"accuracy": float(np.mean(network.predict(data.pixels) == data.labels))},
            test_sha256="a" * 64,
            train_sha256="b" * 64,
            assess=Gate(registry, network, data, rule),
        )
        decisions.append(decision.to_dict())
    return decisions[0], decisions[1], registry


def test_under_significant_the_second_seed_stays_a_challenger(tmp_path: Path, two_seeds) -> None:
    first, second, registry = register_both(tmp_path / "models", "significant", two_seeds)
    assert first["promoted"] and first["policy"] == "significant"
    evidence = second["evidence"]
    assert evidence["p_value"] >= 0.05, "the two seeds differ significantly: pick other seeds"
    assert not second["promoted"]
    assert registry.champion().version == "v0001"
    report = section(second)
    assert f"McNemar's exact p = {evidence['p_value']:.3g}" in report
    assert report.startswith("## Promotion") and "| digit | rows |" in report
    assert registry.get("v0002").decision.evidence == evidence  # in the model's metadata too


def test_under_better_the_second_seed_wins_exactly_when_not_worse(
    tmp_path: Path, two_seeds
) -> None:
    first, second, registry = register_both(tmp_path / "models", "better", two_seeds)
    old, new = second["evidence"]["champion_accuracy"], second["evidence"]["newcomer_accuracy"]
    assert old == first["accuracy"]
    assert second["promoted"] == (new >= old)
    assert registry.champion().version == ("v0002" if new >= old else "v0001")
