"""Figures: valid PNG bytes of the documented pixel size, small enough to embed in markdown."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from mnistnn.config import NetworkConfig
from mnistnn.model.metrics import confusion_matrix
from mnistnn.model.network import NeuralNetwork
from mnistnn.report import figures as plots

MAX_BYTES = 100_000


def decoded(png: bytes) -> Image.Image:
    """Decode fully with Pillow, so a truncated or corrupt file fails here."""
    assert png.startswith(plots.PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    return image


def check_png(png: bytes, size: tuple[int, int]) -> None:
    """Valid PNG, of exactly `size` by both the IHDR header and the decoder, under 100 KB."""
    assert plots.png_size(png) == size
    assert decoded(png).size == size
    assert len(png) < MAX_BYTES


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture(scope="module")
def test_set(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1,000 noisy 'digits', labels and sigmoid-like outputs with some confident mistakes."""
    n = 1000
    pixels = (rng.random((n, 784)) ** 4 * 255).astype(np.uint8)
    labels = rng.integers(0, 10, n)
    outputs = rng.random((n, 10)) * 0.3
    outputs[np.arange(n), labels] = 0.9
    wrong = rng.choice(n, 60, replace=False)
    outputs[wrong, (labels[wrong] + 1) % 10] = rng.uniform(0.91, 0.999, 60)
    return pixels, labels, outputs


def test_documented_sizes_are_the_registered_ones() -> None:
    assert plots.FIGURE_SIZES == {
        "learning_curve": (800, 450),
        "confusion": (640, 560),
        "mistakes": (720, 800),
        "hidden_weights": (960, 680),
        "backward_query": (800, 380),
        "time_to_accuracy": (800, 450),
        "sweep": (800, 450),
    }


def test_learning_curve() -> None:
    epochs = list(range(1, 11))
    accuracy = [0.92 + 0.005 * e for e in range(10)]
    confident = [0.80 + 0.01 * e for e in range(10)]
    check_png(plots.learning_curve(epochs, accuracy, confident), (800, 450))


def test_learning_curve_single_epoch() -> None:
    check_png(plots.learning_curve([1], [0.95], [0.9]), (800, 450))


def test_learning_curve_rejects_ragged_series() -> None:
    with pytest.raises(ValueError, match="same length"):
        plots.learning_curve([1, 2], [0.9, 0.95], [0.8])


def test_time_to_accuracy() -> None:
    seconds = [31.5, 29.8, 30.2, 30.0, 29.9]
    accuracy = [0.950, 0.962, 0.968, 0.970, 0.971]
    check_png(plots.time_to_accuracy(seconds, accuracy), (800, 450))


def test_time_to_accuracy_many_epochs_and_bad_durations() -> None:
    check_png(plots.time_to_accuracy([2.0] * 40, np.linspace(0.9, 0.97, 40)), (800, 450))
    with pytest.raises(ValueError, match=">= 0"):
        plots.time_to_accuracy([1.0, -1.0], [0.9, 0.95])


def test_confusion_heatmap(test_set: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, labels, outputs = test_set
    confusion = confusion_matrix(np.argmax(outputs, axis=1), labels) * 10  # four-digit counts
    check_png(plots.confusion_heatmap(confusion), (640, 560))


def test_confusion_heatmap_all_zero_and_bad_shape() -> None:
    check_png(plots.confusion_heatmap(np.zeros((10, 10), dtype=np.int64)), (640, 560))
    with pytest.raises(ValueError, match="square"):
        plots.confusion_heatmap(np.zeros((10, 9)))


def test_confident_mistakes(test_set: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    pixels, labels, outputs = test_set
    check_png(plots.confident_mistakes(pixels, labels, outputs), (720, 800))


def test_confident_mistakes_fewer_than_count(
    test_set: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    pixels, labels, _ = test_set
    outputs = np.eye(10)[labels] * 0.9 + 0.01
    outputs[:3] = np.eye(10)[(labels[:3] + 1) % 10] * 0.95  # exactly three mistakes
    check_png(plots.confident_mistakes(pixels, labels, outputs, count=16), (720, 800))


def test_confident_mistakes_none(test_set: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    pixels, labels, _ = test_set
    perfect = np.eye(10)[labels] * 0.98 + 0.01
    check_png(plots.confident_mistakes(pixels, labels, perfect), (720, 800))


def test_confident_mistakes_rejects_mismatched_inputs(
    test_set: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    pixels, labels, outputs = test_set
    with pytest.raises(ValueError, match="labels must be"):
        plots.confident_mistakes(pixels, labels[:-1], outputs)
    with pytest.raises(ValueError, match="count"):
        plots.confident_mistakes(pixels, labels, outputs, count=0)


def test_hidden_weight_tiles_reference_size() -> None:
    """88 random-init tiles: noise-like weights are the hardest case for PNG compression."""
    net = NeuralNetwork(NetworkConfig(hidden_nodes=88))
    check_png(plots.hidden_weight_tiles(net.w_input_hidden), (960, 680))


@pytest.mark.parametrize("hidden", [1, 7, 300])
def test_hidden_weight_tiles_other_sizes(hidden: int) -> None:
    net = NeuralNetwork(NetworkConfig(hidden_nodes=hidden))
    check_png(plots.hidden_weight_tiles(net.w_input_hidden), (960, 680))


def test_hidden_weight_tiles_all_zero() -> None:
    check_png(plots.hidden_weight_tiles(np.zeros((88, 784))), (960, 680))


def test_backward_query_images_of_a_random_init_network() -> None:
    net = NeuralNetwork(NetworkConfig(hidden_nodes=88))
    images = np.stack([net.backward_query(digit) for digit in range(10)])
    assert images.shape == (10, 784)
    for image in images:
        assert image.shape == (784,)
        assert np.all((image >= 0.0) & (image <= 1.0))
    check_png(plots.backward_query_images(images), (800, 380))


def test_backward_query_images_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="784"):
        plots.backward_query_images(np.zeros((10, 28, 28)))


def test_png_size_rejects_non_png() -> None:
    with pytest.raises(ValueError, match="not a PNG"):
        plots.png_size(b"GIF89a" + bytes(30))


def test_figures_can_be_drawn_from_threads() -> None:
    """No pyplot state: concurrent figures come out identical to sequential ones."""
    epochs, accuracy, confident = [1, 2, 3], [0.9, 0.93, 0.95], [0.8, 0.85, 0.88]
    expected = plots.learning_curve(epochs, accuracy, confident)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(lambda _: plots.learning_curve(epochs, accuracy, confident), range(4))
        )
    assert all(result == expected for result in results)
