"""Score charts: valid PNG bytes of the documented pixel size, small enough to embed in markdown."""

from __future__ import annotations

import numpy as np
import pytest

from mnistnn.model.metrics import confusion_matrix
from mnistnn.report import figures
from tests.report.conftest import check_png


def test_learning_curve() -> None:
    epochs = list(range(1, 11))
    accuracy = [0.92 + 0.005 * e for e in range(10)]
    confident = [0.80 + 0.01 * e for e in range(10)]
    check_png(figures.learning_curve(epochs, accuracy, confident), (800, 450))


def test_learning_curve_single_epoch() -> None:
    check_png(figures.learning_curve([1], [0.95], [0.9]), (800, 450))


def test_learning_curve_rejects_ragged_series() -> None:
    with pytest.raises(ValueError, match="same length"):
        figures.learning_curve([1, 2], [0.9, 0.95], [0.8])


def test_time_to_accuracy() -> None:
    seconds = [31.5, 29.8, 30.2, 30.0, 29.9]
    accuracy = [0.950, 0.962, 0.968, 0.970, 0.971]
    check_png(figures.time_to_accuracy(seconds, accuracy), (800, 450))


def test_time_to_accuracy_many_epochs_and_bad_durations() -> None:
    check_png(figures.time_to_accuracy([2.0] * 40, np.linspace(0.9, 0.97, 40)), (800, 450))
    with pytest.raises(ValueError, match=">= 0"):
        figures.time_to_accuracy([1.0, -1.0], [0.9, 0.95])


def test_confusion_heatmap(test_set: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, labels, outputs = test_set
    confusion = confusion_matrix(np.argmax(outputs, axis=1), labels) * 10  # four-digit counts
    check_png(figures.confusion_heatmap(confusion), (640, 560))


def test_confusion_heatmap_all_zero_and_bad_shape() -> None:
    check_png(figures.confusion_heatmap(np.zeros((10, 10), dtype=np.int64)), (640, 560))
    with pytest.raises(ValueError, match="square"):
        figures.confusion_heatmap(np.zeros((10, 9)))


def test_unscored_epochs_are_gaps_in_the_curves_never_values() -> None:
    epochs = [1, 2, 3, 4, 5]
    accuracy = [None, 0.95, None, 0.97, 0.975]
    confident = [None, 0.85, None, 0.88, 0.89]
    x, acc, conf = figures.learning_curve_data(epochs, accuracy, confident)
    assert x.tolist() == epochs
    assert np.isnan(acc).tolist() == [True, False, True, False, False]
    assert np.isnan(conf).tolist() == [True, False, True, False, False]
    assert acc[~np.isnan(acc)].tolist() == [0.95, 0.97, 0.975]
    check_png(figures.learning_curve(epochs, accuracy, confident), (800, 450))
    # every epoch's training time counts towards the x axis, scored or not
    elapsed, scores = figures.time_to_accuracy_data([1.0, 2.0, 1.0, 2.0, 1.0], accuracy)
    assert elapsed.tolist() == [1.0, 3.0, 4.0, 6.0, 7.0]
    assert np.isnan(scores).tolist() == [True, False, True, False, False]
    check_png(figures.time_to_accuracy([1.0] * 5, accuracy), (800, 450))
    with pytest.raises(ValueError, match="at least one scored epoch"):
        figures.learning_curve([1, 2], [None, None], [None, None])
