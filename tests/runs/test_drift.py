"""The drift check: the champion's accuracy on a batch, the label histogram against the base's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.data import simulate
from mnistnn.data.ingest import ingest_csv
from mnistnn.errors import ConfigError
from mnistnn.runs.drift import LABEL_TVD_FLOOR, check_batch, drift_of, ink_stats, label_limit
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


# -- the label rule (prior shift) ----------------------------------------------------------------
def test_a_label_skewed_batch_is_flagged_without_a_champion(mnist_train) -> None:  # type: ignore[no-untyped-def]
    base = ink_stats(mnist_train[0][:6000], mnist_train[1][:6000])
    # the demo's skewed batch: 70% of 1,000 rows are two digits, the champion would score it well
    pixels, labels = simulate.make_batch(*mnist_train, "skewed", 1000, seed=0, number=5)
    result = drift_of("skewed", pixels, labels, None, None, base)
    assert result.drift and result.label_distance is not None and result.label_distance > 0.4
    assert result.label_limit == pytest.approx(LABEL_TVD_FLOOR)
    reason = result.drift_reason or ""
    assert reason.startswith(f"label shift: TVD {result.label_distance:.2f} > 0.10 (digit ")
    # the accuracy rule could not run, and the reason still says so
    assert reason.endswith("; no champion yet: accuracy not checked")
    assert result.to_dict()["label_limit"] == result.label_limit


def test_small_balanced_batches_are_sampling_noise_not_drift(mnist_train) -> None:  # type: ignore[no-untyped-def]
    base = ink_stats(mnist_train[0], mnist_train[1])
    checks = [
        drift_of("slice", mnist_train[0][i : i + 50], mnist_train[1][i : i + 50], None, None, base)
        for i in range(0, 2000, 50)
    ]
    assert not any(check.drift for check in checks)
    # a bare 0.10 would have flagged some of these honest 50-row slices: the bound is what holds
    assert any((check.label_distance or 0) > LABEL_TVD_FLOOR for check in checks)


def test_the_noise_bound_rarely_flags_an_honest_batch(mnist_train) -> None:  # type: ignore[no-untyped-def]
    shares = np.bincount(mnist_train[1], minlength=10) / len(mnist_train[1])
    rng = np.random.default_rng(0)
    for n in (30, 300, 3000):
        counts = rng.multinomial(n, shares, size=20000)
        distance = 0.5 * np.abs(counts / n - shares).sum(axis=1)
        limit = label_limit(n, len(mnist_train[1]))
        assert limit is not None and np.mean(distance > limit) < 0.001, n


def test_label_limit() -> None:
    assert label_limit(1000, 60000) == LABEL_TVD_FLOOR  # the floor: noise is 0.08 here
    assert label_limit(200, 60000) == pytest.approx(2.5 * (1 / 200 + 1 / 60000) ** 0.5)
    assert label_limit(200, 200) == pytest.approx(2.5 * 0.1)  # a small base is noisy too
    assert label_limit(0, 60000) is None and label_limit(10, 0) is None


def test_both_rules_fire_and_both_are_named(champion, mnist_train) -> None:  # type: ignore[no-untyped-def]
    network, test_accuracy = champion
    base = ink_stats(mnist_train[0][:6000], mnist_train[1][:6000])
    pixels, labels = simulate.make_batch(*mnist_train, "skewed", 500, seed=0, number=5)
    shifted = simulate.offcentre(pixels, np.random.default_rng(0))
    result = drift_of("both", shifted, labels, network, test_accuracy, base)
    accuracy_reason, label_reason = (result.drift_reason or "").split("; ")
    assert result.drift
    assert "points below its test accuracy" in accuracy_reason
    assert label_reason.startswith("label shift: TVD ")
    # and the label-skewed batch alone: the champion scores it well, only the label rule fires
    alone = drift_of("skewed", pixels, labels, network, test_accuracy, base)
    assert alone.drift and (alone.drift_reason or "").startswith("label shift: TVD ")
    assert "points below" not in (alone.drift_reason or "")
