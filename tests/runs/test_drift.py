"""The drift check: the champion's accuracy on a batch against its test accuracy, ink stats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.data import simulate
from mnistnn.data.ingest import ingest_csv
from mnistnn.errors import ConfigError
from mnistnn.runs.drift import check_batch, ink_stats
from tests.conftest import write_mnist_csv


@pytest.fixture(scope="module")
def champion(mnist_train, mnist_test):  # type: ignore[no-untyped-def]
    network = NeuralNetwork(NetworkConfig(hidden_nodes=40))
    network.train_epoch(mnist_train[0][:6000], mnist_train[1][:6000])
    test_accuracy = float(np.mean(network.predict(mnist_test[0][:1000]) == mnist_test[1][:1000]))
    return network, test_accuracy


def parquet(tmp_path: Path, name: str, pixels, labels) -> str:  # type: ignore[no-untyped-def]
    return ingest_csv(write_mnist_csv(tmp_path / name, pixels, labels), tmp_path / "p").parquet


def test_ink_stats(mnist_train) -> None:  # type: ignore[no-untyped-def]
    pixels, labels = mnist_train[0][:1000], mnist_train[1][:1000]
    stats = ink_stats(pixels, labels)
    assert stats.label_histogram == np.bincount(labels, minlength=10).tolist()
    assert stats.mean_intensity == pytest.approx(pixels.mean() / 255)
    assert 0.05 < stats.dark_fraction < 0.3 and stats.rows == 1000


def test_a_plain_batch_is_not_drift_a_shifted_one_is(tmp_path, champion, mnist_train) -> None:  # type: ignore[no-untyped-def]
    network, test_accuracy = champion
    base = ink_stats(mnist_train[0][:6000], mnist_train[1][:6000])
    pixels, labels = mnist_train[0][30000:30500], mnist_train[1][30000:30500]
    plain = check_batch(
        parquet(tmp_path, "plain.csv", pixels, labels), network, test_accuracy, base
    )
    assert not plain.drift and plain.drift_reason is None
    assert (
        plain.champion_accuracy is not None and abs(plain.champion_accuracy - test_accuracy) < 0.05
    )
    shifted = simulate.offcentre(pixels, np.random.default_rng(0))
    drifted = check_batch(
        parquet(tmp_path, "shifted.csv", shifted, labels), network, test_accuracy, base
    )
    assert drifted.drift and drifted.champion_accuracy < test_accuracy - 0.05
    assert "points below its test accuracy" in (drifted.drift_reason or "")
    assert drifted.to_dict()["drift"] is True
    # the threshold is a parameter: a drop of that size is tolerated with a larger one
    assert not check_batch(
        parquet(tmp_path, "shifted.csv", shifted, labels),
        network,
        test_accuracy,
        base,
        threshold=1.0,
    ).drift


def test_without_a_champion_nothing_is_flagged(tmp_path, mnist_train) -> None:  # type: ignore[no-untyped-def]
    base = ink_stats(mnist_train[0][:100], mnist_train[1][:100])
    path = parquet(tmp_path, "a.csv", mnist_train[0][:100], mnist_train[1][:100])
    result = check_batch(path, None, None, base)
    assert result.champion_accuracy is None and not result.drift
    assert "no champion" in (result.drift_reason or "")


def test_the_threshold_is_checked(tmp_path, mnist_train) -> None:  # type: ignore[no-untyped-def]
    base = ink_stats(mnist_train[0][:100], mnist_train[1][:100])
    path = parquet(tmp_path, "a.csv", mnist_train[0][:100], mnist_train[1][:100])
    with pytest.raises(ConfigError, match="drift_threshold"):
        check_batch(path, None, None, base, threshold=-0.1)
