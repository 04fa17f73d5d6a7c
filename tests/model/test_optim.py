"""The options beyond the book: gradients, schedules, determinism and exact resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnistnn import ConfigError, NetworkConfig, NeuralNetwork
from mnistnn.model import optim as modern
from mnistnn.model.checkpoint import load_weights, save_weights
from mnistnn.model.maths import input_scale


def _params(rng: np.random.Generator, hidden: int = 5, inputs: int = 7) -> modern.Params:
    return {
        "w_input_hidden": rng.normal(0, 0.5, (hidden, inputs)),
        "w_hidden_output": rng.normal(0, 0.5, (10, hidden)),
        "bias_hidden": rng.normal(0, 0.1, hidden),
        "bias_output": rng.normal(0, 0.1, 10),
    }


def test_cross_entropy_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    params = _params(rng)
    x = rng.uniform(0.01, 1.0, (4, 7))
    labels = np.array([3, 0, 9, 3], dtype=np.uint8)
    directions = modern.descent_directions(params, x, labels, "softmax")
    step = 1e-6
    for key, value in params.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            original = value[index]
            value[index] = original + step
            up = modern.cross_entropy(params, x, labels)
            value[index] = original - step
            down = modern.cross_entropy(params, x, labels)
            value[index] = original
            numeric[index] = (up - down) / (2 * step)
        # descent directions are minus the gradient
        np.testing.assert_allclose(-directions[key], numeric, rtol=1e-6, atol=1e-9, err_msg=key)


def test_softmax_outputs_are_probabilities() -> None:
    net = NeuralNetwork(NetworkConfig(output="softmax", biases=True, hidden_nodes=12))
    outputs = net.query(np.random.default_rng(1).integers(0, 256, (5, 784), dtype=np.uint8))
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("constant", [0.1, 0.1, 0.1, 0.1, 0.1]),
        ("step", [0.1, 0.1, 0.01, 0.001, 0.001]),
        ("cosine", [0.1, 0.07525, 0.02575, 0.001, 0.001]),
    ],
)
def test_schedules(schedule: str, expected: list[float]) -> None:
    config = NetworkConfig(learning_rate=0.1, schedule=schedule, schedule_epochs=4)
    rates = [modern.learning_rate_at(config, epoch) for epoch in range(1, 6)]
    np.testing.assert_allclose(rates, expected, rtol=1e-4)


def test_shuffle_and_augment_are_deterministic_per_seed_and_epoch(mnist_train) -> None:
    pixels, labels = mnist_train[0][:300], mnist_train[1][:300]
    config = NetworkConfig(shuffle=True, augment="elastic", seed=4)
    first = modern.epoch_data(config, 1, pixels, labels)
    again = modern.epoch_data(config, 1, pixels, labels)
    second = modern.epoch_data(config, 2, pixels, labels)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], second[1])
    assert sorted(first[1].tolist()) == sorted(labels.tolist())
    plain = modern.epoch_data(NetworkConfig(), 1, pixels, labels)
    assert plain[0] is pixels


MODERN = NetworkConfig(
    hidden_nodes=32,
    output="softmax",
    biases=True,
    momentum=0.9,
    learning_rate=0.1,
    batch_size=50,
    schedule="cosine",
    schedule_epochs=3,
    shuffle=True,
    augment="elastic",
    dtype="float32",
    init="default",
)


def test_resumed_augmented_run_equals_uninterrupted(mnist_train, tmp_path: Path) -> None:
    pixels, labels = mnist_train[0][:1000], mnist_train[1][:1000]
    straight = NeuralNetwork(MODERN)
    for _ in range(3):
        straight.train_epoch(pixels, labels)
    interrupted = NeuralNetwork(MODERN)
    interrupted.train_epoch(pixels, labels)
    save_weights(tmp_path / "epoch-1.npz", interrupted)
    resumed = load_weights(tmp_path / "epoch-1.npz")
    assert resumed.epochs_trained == 1
    assert set(resumed.velocities) == {
        "w_input_hidden",
        "w_hidden_output",
        "bias_hidden",
        "bias_output",
    }
    for _ in range(2):
        resumed.train_epoch(pixels, labels)
    for key, value in straight.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[key], value, err_msg=key)


def test_modern_training_learns(mnist_train, mnist_test) -> None:
    from mnistnn.model.metrics import accuracy

    net = NeuralNetwork(MODERN)
    for _ in range(2):
        net.train_epoch(mnist_train[0][:5000], mnist_train[1][:5000])
    assert accuracy(net.query(mnist_test[0][:1000]), mnist_test[1][:1000]) > 0.75


def test_minibatch_mean_without_momentum_is_plain_sgd() -> None:
    rng = np.random.default_rng(2)
    config = NetworkConfig(hidden_nodes=6, output="softmax", batch_size=4, learning_rate=0.5)
    net = NeuralNetwork(config)
    start = {key: value.copy() for key, value in net.parameters().items()}
    pixels = rng.integers(0, 256, (4, 784), dtype=np.uint8)
    labels = np.array([1, 2, 3, 4], dtype=np.uint8)
    net.train_epoch(pixels, labels)
    directions = modern.descent_directions(start, input_scale()[pixels], labels, "softmax")
    expected = start["w_input_hidden"] + 0.5 * directions["w_input_hidden"]
    np.testing.assert_allclose(net.w_input_hidden, expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(net.bias_hidden, 0.0)  # biases off: not trained


def test_the_books_minibatch_adds_up_the_per_sample_updates() -> None:
    """Under the book's rule a batch sums its samples' updates at the batch's weights (a mean
    would be a quarter of it here), the same bits in float64 as the reference expression."""
    rng = np.random.default_rng(3)
    config = NetworkConfig(hidden_nodes=6, batch_size=4, learning_rate=0.5)
    net = NeuralNetwork(config)
    w_ih, w_ho = net.w_input_hidden.copy(), net.w_hidden_output.copy()
    pixels = rng.integers(0, 256, (4, 784), dtype=np.uint8)
    labels = np.array([1, 2, 3, 4], dtype=np.uint8)
    net.train_epoch(pixels, labels)
    x = input_scale()[pixels]
    hidden = 1.0 / (1.0 + np.exp(-(x @ w_ih.T)))
    outputs = 1.0 / (1.0 + np.exp(-(hidden @ w_ho.T)))
    error = np.full((4, 10), 0.01)
    error[np.arange(4), labels] = 1.0
    error -= outputs
    summed_ih = ((error @ w_ho) * hidden * (1.0 - hidden)).T @ x
    summed_ho = (error * outputs * (1.0 - outputs)).T @ hidden
    np.testing.assert_allclose(net.w_input_hidden, w_ih + 0.5 * summed_ih, rtol=0, atol=1e-14)
    np.testing.assert_allclose(net.w_hidden_output, w_ho + 0.5 * summed_ho, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("output", "tanh", "output must be one of sigmoid, softmax; got 'tanh'"),
        ("momentum", 1.0, r"momentum must be a number in \[0, 1\), got 1.0"),
        ("schedule", "linear", "schedule must be one of constant, step, cosine"),
        ("augment", "rotate", "augment must be one of none, affine, elastic"),
        ("shuffle", "yes", "shuffle must be true or false, got 'yes'"),
        ("schedule_epochs", 0, "schedule_epochs must be >= 1, got 0"),
    ],
)
def test_invalid_modern_options(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NetworkConfig(**{field: value})  # type: ignore[arg-type]
