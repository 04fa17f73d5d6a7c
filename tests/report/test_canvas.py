"""The shared canvas: registered figure sizes, PNG header reading, drawing from threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from mnistnn.report import canvas, figures


def test_documented_sizes_are_the_registered_ones() -> None:
    assert canvas.FIGURE_SIZES == {
        "learning_curve": (800, 450),
        "confusion": (640, 560),
        "mistakes": (720, 800),
        "hidden_weights": (960, 680),
        "backward_query": (800, 380),
        "time_to_accuracy": (800, 450),
        "sweep": (800, 450),
        "promotion_recall": (800, 400),
    }


def test_png_size_rejects_non_png() -> None:
    with pytest.raises(ValueError, match="not a PNG"):
        canvas.png_size(b"GIF89a" + bytes(30))


def test_figures_can_be_drawn_from_threads() -> None:
    """No pyplot state: concurrent figures come out identical to sequential ones."""
    epochs, accuracy, confident = [1, 2, 3], [0.9, 0.93, 0.95], [0.8, 0.85, 0.88]
    expected = figures.learning_curve(epochs, accuracy, confident)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(lambda _: figures.learning_curve(epochs, accuracy, confident), range(4))
        )
    assert all(result == expected for result in results)
