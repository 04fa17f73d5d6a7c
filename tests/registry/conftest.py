"""Shared helpers of the registry tests: tiny networks, a registry in tmp_path, registering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mnistnn.config import NetworkConfig
from mnistnn.model.network import NeuralNetwork
from mnistnn.registry.records import PromotionDecision
from mnistnn.registry.store import ModelRegistry

TEST_A = "a" * 64
TEST_B = "b" * 64
TRAIN = "c" * 64


def tiny(seed: int) -> NeuralNetwork:
    """A 784-4-10 network with random weights: enough to exercise the registry."""
    return NeuralNetwork(NetworkConfig(hidden_nodes=4, seed=seed))


def register(
    registry: ModelRegistry, seed: int, accuracy: float, test: str = TEST_A, **kwargs: Any
) -> PromotionDecision:
    metrics = {"accuracy": accuracy, "confident": accuracy - 0.1, "mse": 0.01}
    return registry.register(
        tiny(seed), metrics=metrics, test_sha256=test, train_sha256=TRAIN, **kwargs
    )


def same_weights(a: NeuralNetwork, b: NeuralNetwork) -> bool:
    return bool(
        np.array_equal(a.w_input_hidden, b.w_input_hidden)
        and np.array_equal(a.w_hidden_output, b.w_hidden_output)
    )


@pytest.fixture
def registry(store_url: str) -> ModelRegistry:
    """A registry in a local folder and one in a SeaweedFS bucket (the same tests run on both)."""
    if "://" in store_url:
        return ModelRegistry(f"{store_url}/models", lock_timeout=5.0)
    return ModelRegistry(Path(store_url) / "models", lock_timeout=5.0)


@pytest.fixture
def local_registry(tmp_path: Path) -> ModelRegistry:
    """A registry in a local folder, for what only a folder has (flock, empty directories)."""
    return ModelRegistry(tmp_path / "models", lock_timeout=5.0)
