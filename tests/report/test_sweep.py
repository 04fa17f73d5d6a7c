"""Sweep charts and report text."""

from __future__ import annotations

import io

from PIL import Image

from mnistnn.report import sweep
from mnistnn.runs.sweep import SweepPoint


def _point(hidden: int, lr: float, epochs: int, accuracy: float) -> SweepPoint:
    return SweepPoint(
        hidden, lr, epochs, 1, "float64", 0, accuracy, 0.5, epochs, accuracy, 1.0, "r"
    )


def test_charts_and_markdown_name_the_best() -> None:
    points = [
        _point(h, lr, e, 0.9 + h / 1000 + lr / 10 + e / 100)
        for h in (10, 20)
        for lr in (0.1, 0.2)
        for e in (1, 2)
    ]
    figures = sweep.charts(points)
    assert set(figures) == {"hidden_nodes", "learning_rate", "epochs"}
    for png in figures.values():
        assert Image.open(io.BytesIO(png)).size == (800, 450)
    text = sweep.markdown(points, figures, 12.0)
    assert "**Best:** hidden nodes 20, learning rate 0.2, 2 epochs" in text
    assert text.count("data:image/png;base64,") == 3
