"""Metrics on small hand-made outputs."""

from __future__ import annotations

import numpy as np
import pytest

from mnistnn.model import metrics

OUTPUTS = np.array(
    [
        [0.90, 0.10, 0.01],  # true 0, predicted 0, confident
        [0.20, 0.80, 0.30],  # true 1, predicted 1, not confident (0.80 <= 0.85)
        [0.60, 0.50, 0.40],  # true 2, predicted 0
        [0.10, 0.95, 0.20],  # true 1, predicted 1, confident
    ]
)
LABELS = np.array([0, 1, 2, 1])


def test_accuracy_and_confident_score() -> None:
    assert metrics.accuracy(OUTPUTS, LABELS) == 0.75
    assert metrics.confident_score(OUTPUTS, LABELS) == 0.5
    assert metrics.confident_score(OUTPUTS, LABELS, threshold=0.5) == 0.75


def test_confident_ignores_other_outputs() -> None:
    """The reference's score looks only at the output at the true label."""
    both_high = np.array([[0.9, 0.99]])
    assert metrics.confident_score(both_high, np.array([0])) == 1.0
    assert metrics.accuracy(both_high, np.array([0])) == 0.0


def test_confusion_and_precision_recall() -> None:
    predicted = np.argmax(OUTPUTS, axis=1)
    confusion = metrics.confusion_matrix(predicted, LABELS, 3)
    np.testing.assert_array_equal(confusion, [[1, 0, 0], [0, 2, 0], [1, 0, 0]])
    precision, recall = metrics.precision_recall(confusion)
    np.testing.assert_allclose(precision, [0.5, 1.0, 0.0])
    np.testing.assert_allclose(recall, [1.0, 1.0, 0.0])


def test_mse_against_reference_targets() -> None:
    outputs = np.array([[0.01, 1.0], [0.51, 0.01]])
    # second row: target (1.0, 0.01) -> errors 0.49 and 0
    assert metrics.output_mse(outputs, np.array([1, 0])) == pytest.approx(0.49**2 / 4)


def test_evaluation_round_trip() -> None:
    evaluation = metrics.evaluate_outputs(OUTPUTS, LABELS)
    assert metrics.Evaluation.from_dict(evaluation.to_dict()) == evaluation
    assert evaluation.n_samples == 4 and evaluation.accuracy == 0.75


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"outputs must be \(n, classes\) and labels \(n,\)"):
        metrics.accuracy(OUTPUTS, LABELS[:2])
    with pytest.raises(ValueError, match="empty set"):
        metrics.accuracy(np.zeros((0, 10)), np.zeros(0))
