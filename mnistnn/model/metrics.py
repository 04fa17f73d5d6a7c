"""Scores of a network's outputs on labelled data, all vectorised.

`accuracy` is the argmax score; `confident_score` is the reference program's own score: the share
of samples whose output at the true label exceeds a threshold (0.85), whatever the other outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mnistnn.config import N_CLASSES
from mnistnn.model.maths import targets
from mnistnn.types import FloatArray, IntArray

CONFIDENT_THRESHOLD = 0.85


def _check(outputs: FloatArray, labels: IntArray) -> tuple[FloatArray, IntArray]:
    outputs = np.asarray(outputs)
    labels = np.asarray(labels)
    if outputs.ndim != 2 or labels.shape != (outputs.shape[0],):
        raise ValueError(
            f"outputs must be (n, classes) and labels (n,); got {outputs.shape} and {labels.shape}"
        )
    if outputs.shape[0] == 0:
        raise ValueError("cannot score an empty set: outputs has 0 rows")
    return outputs, labels.astype(np.intp)


def accuracy(outputs: FloatArray, labels: IntArray) -> float:
    """Share of samples whose largest output is at the true label."""
    outputs, labels = _check(outputs, labels)
    return float(np.mean(np.argmax(outputs, axis=1) == labels))


def confident_score(
    outputs: FloatArray, labels: IntArray, threshold: float = CONFIDENT_THRESHOLD
) -> float:
    """Share of samples whose output at the true label is > `threshold` (the reference's score)."""
    outputs, labels = _check(outputs, labels)
    return float(np.mean(outputs[np.arange(labels.shape[0]), labels] > threshold))


def output_mse(outputs: FloatArray, labels: IntArray) -> float:
    """Mean squared error of the outputs against the reference targets."""
    outputs, labels = _check(outputs, labels)
    return float(np.mean((targets(labels, outputs.shape[1]) - outputs) ** 2))


def confusion_matrix(predicted: IntArray, labels: IntArray, n_classes: int = N_CLASSES) -> IntArray:
    """(classes, classes) counts; row = true label, column = predicted label."""
    flat = np.asarray(labels, dtype=np.intp) * n_classes + np.asarray(predicted, dtype=np.intp)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def precision_recall(confusion: IntArray) -> tuple[FloatArray, FloatArray]:
    """Per-class (precision, recall) from a confusion matrix; 0 where a class has no support."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(
        true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0
    )
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    return precision, recall


@dataclass(frozen=True)
class Evaluation:
    """Every score of one model on one labelled set (JSON-able through `to_dict`)."""

    accuracy: float
    confident: float
    mse: float
    confusion: list[list[int]] = field(repr=False)
    n_samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "confident": self.confident,
            "mse": self.mse,
            "confusion": self.confusion,
            "n_samples": self.n_samples,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(
            accuracy=float(data["accuracy"]),
            confident=float(data["confident"]),
            mse=float(data["mse"]),
            confusion=[[int(v) for v in row] for row in data["confusion"]],
            n_samples=int(data["n_samples"]),
        )


def evaluate_outputs(
    outputs: FloatArray, labels: IntArray, threshold: float = CONFIDENT_THRESHOLD
) -> Evaluation:
    """All scores of (n, classes) outputs against (n,) labels."""
    outputs, labels = _check(outputs, labels)
    confusion = confusion_matrix(np.argmax(outputs, axis=1), labels, outputs.shape[1])
    return Evaluation(
        accuracy=accuracy(outputs, labels),
        confident=confident_score(outputs, labels, threshold),
        mse=output_mse(outputs, labels),
        confusion=confusion.tolist(),
        n_samples=int(labels.shape[0]),
    )
