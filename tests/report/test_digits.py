"""Image figures (mistakes, weight tiles, back-query): valid PNGs of the documented size."""

from __future__ import annotations

import numpy as np
import pytest

from mnistnn.config import NetworkConfig
from mnistnn.model.network import NeuralNetwork
from mnistnn.report import digits
from tests.report.conftest import check_png


def test_confident_mistakes(test_set: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    pixels, labels, outputs = test_set
    check_png(digits.confident_mistakes(pixels, labels, outputs), (720, 800))


def test_confident_mistakes_fewer_than_count(
    test_set: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    pixels, labels, _ = test_set
    outputs = np.eye(10)[labels] * 0.9 + 0.01
    outputs[:3] = np.eye(10)[(labels[:3] + 1) % 10] * 0.95  # exactly three mistakes
    check_png(digits.confident_mistakes(pixels, labels, outputs, count=16), (720, 800))


def test_confident_mistakes_none(test_set: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    pixels, labels, _ = test_set
    perfect = np.eye(10)[labels] * 0.98 + 0.01
    check_png(digits.confident_mistakes(pixels, labels, perfect), (720, 800))


def test_confident_mistakes_rejects_mismatched_inputs(
    test_set: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    pixels, labels, outputs = test_set
    with pytest.raises(ValueError, match="labels must be"):
        digits.confident_mistakes(pixels, labels[:-1], outputs)
    with pytest.raises(ValueError, match="count"):
        digits.confident_mistakes(pixels, labels, outputs, count=0)


def test_hidden_weight_tiles_reference_size() -> None:
    """88 random-init tiles: noise-like weights are the hardest case for PNG compression."""
    net = NeuralNetwork(NetworkConfig(hidden_nodes=88))
    check_png(digits.hidden_weight_tiles(net.w_input_hidden), (960, 680))


@pytest.mark.parametrize("hidden", [1, 7, 300])
def test_hidden_weight_tiles_other_sizes(hidden: int) -> None:
    net = NeuralNetwork(NetworkConfig(hidden_nodes=hidden))
    check_png(digits.hidden_weight_tiles(net.w_input_hidden), (960, 680))


def test_hidden_weight_tiles_all_zero() -> None:
    check_png(digits.hidden_weight_tiles(np.zeros((88, 784))), (960, 680))


def test_backward_query_images_of_a_random_init_network() -> None:
    net = NeuralNetwork(NetworkConfig(hidden_nodes=88))
    images = np.stack([net.backward_query(digit) for digit in range(10)])
    assert images.shape == (10, 784)
    for image in images:
        assert image.shape == (784,)
        assert np.all((image >= 0.0) & (image <= 1.0))
    check_png(digits.backward_query_images(images), (800, 380))


def test_backward_query_images_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="784"):
        digits.backward_query_images(np.zeros((10, 28, 28)))
