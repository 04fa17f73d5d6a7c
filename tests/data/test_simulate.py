"""Demo batches: deterministic, valid MNIST CSV, named as simulated, and visibly shifted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.data import simulate
from mnistnn.data.fast_csv import read_csv
from mnistnn.data.ingest import ingest_csv
from mnistnn.errors import ConfigError

ROWS = 300


@pytest.fixture(scope="module")
def batches(small_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The five kinds, 300 rows each, from the 2,000-row training slice."""
    out = tmp_path_factory.mktemp("sim")
    written = simulate.simulate_batches(small_csvs[0], out, rows=ROWS, seed=3)
    return {batch.kind: (batch, *read_csv(batch.path)) for batch in written}


@pytest.fixture(scope="module")
def champion(mnist_train) -> NeuralNetwork:
    """A quick stand-in champion: one epoch on 10,000 unshifted training rows."""
    network = NeuralNetwork(NetworkConfig())
    network.train_epoch(mnist_train[0][:10000], mnist_train[1][:10000])
    return network


def accuracy(network: NeuralNetwork, pixels: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(network.predict(pixels) == labels))


def test_names_cycle_through_the_kinds(small_csvs, tmp_path: Path) -> None:
    written = simulate.simulate_batches(small_csvs[0], tmp_path, count=7, rows=20)
    assert [batch.name for batch in written] == [
        "sim-plain-01.csv",
        "sim-rotated-02.csv",
        "sim-thick-03.csv",
        "sim-offcentre-04.csv",
        "sim-skewed-05.csv",
        "sim-plain-06.csv",
        "sim-rotated-07.csv",
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(b.name for b in written)
    assert all(batch.rows == 20 and sum(batch.label_counts) == 20 for batch in written)


def test_deterministic_per_seed(small_csvs, tmp_path: Path) -> None:
    first = simulate.simulate_batches(small_csvs[0], tmp_path / "a", rows=50, seed=1)
    again = simulate.simulate_batches(small_csvs[0], tmp_path / "b", rows=50, seed=1)
    other = simulate.simulate_batches(small_csvs[0], tmp_path / "c", rows=50, seed=2)
    for one, two, three in zip(first, again, other, strict=True):
        assert Path(one.path).read_bytes() == Path(two.path).read_bytes()
        assert Path(one.path).read_bytes() != Path(three.path).read_bytes()


def test_batches_are_valid_mnist_csv(batches, tmp_path: Path) -> None:
    for batch, pixels, labels in batches.values():
        summary = ingest_csv(batch.path, tmp_path)
        assert (summary.rows_accepted, summary.rows_rejected) == (ROWS, 0)
        assert pixels.shape == (ROWS, 784) and labels.shape == (ROWS,)
        assert np.bincount(labels, minlength=10).tolist() == batch.label_counts


def test_thick_batch_has_more_ink(batches) -> None:
    plain, thick = batches["plain"][1], batches["thick"][1]
    assert thick.mean() > 1.6 * plain.mean()
    assert (thick > 128).mean() > 1.6 * (plain > 128).mean()


def test_skewed_batch_has_a_skewed_label_histogram(batches) -> None:
    plain, skewed = batches["plain"][0].label_counts, batches["skewed"][0].label_counts
    assert sum(sorted(skewed)[-2:]) >= 0.65 * ROWS
    assert sum(sorted(plain)[-2:]) < 0.35 * ROWS


def test_rotated_and_offcentre_batches_fool_the_champion(batches, champion) -> None:
    scores = {
        kind: accuracy(champion, pixels, labels) for kind, (_, pixels, labels) in batches.items()
    }
    assert scores["plain"] > 0.85
    assert scores["rotated"] < scores["plain"] - 0.15
    assert scores["offcentre"] < scores["plain"] - 0.3
    assert scores["thick"] < scores["plain"]


def test_same_ink_for_rotated_and_offcentre(batches) -> None:
    """Those two move the ink without adding much: the drift shows in accuracy, not in ink."""
    plain = batches["plain"][1].mean()
    for kind in ("rotated", "offcentre"):
        assert abs(batches[kind][1].mean() - plain) < 0.15 * plain


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": 0}, "count"),
        ({"rows": 0}, "rows"),
        ({"seed": -1}, "seed"),
        ({"rows": 10**6}, "rows"),
    ],
)
def test_bad_options(small_csvs, tmp_path: Path, options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        simulate.simulate_batches(small_csvs[0], tmp_path, **options)
    assert not any(tmp_path.iterdir())
