"""Charts of a run's scores: learning curve, accuracy against training time, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from matplotlib.colors import PowerNorm
from matplotlib.ticker import MaxNLocator, PercentFormatter

from mnistnn.report.canvas import (
    ACCURACY_COLOUR,
    CONFIDENT_COLOUR,
    new_figure,
    same_length,
    scores,
    series,
    to_png,
)
from mnistnn.types import FloatArray


# -- per-epoch curves ---------------------------------------------------------------------------
def learning_curve_data(
    epochs: Sequence[int],
    accuracy: Sequence[float | None],
    confident: Sequence[float | None],
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The (epoch, accuracy, confident) arrays the learning curve draws: NaN (a gap in the line)
    wherever an epoch was not scored, never a value in between."""
    x = series("epochs", epochs)
    acc = scores("accuracy", accuracy)
    conf = scores("confident", confident)
    same_length(epochs=x, accuracy=acc, confident=conf)
    return x, acc, conf


def _markers(values: FloatArray) -> tuple[bool, float]:
    """(draw markers, their size): always with gaps (an isolated score has no line to show it),
    and for short runs; smaller when there are many points."""
    shown = int(np.count_nonzero(~np.isnan(values)))
    gaps = shown < len(values)
    return (gaps or len(values) <= 30), (6.0 if shown <= 30 else 3.0)


def _last_score(values: FloatArray) -> float:
    """The last scored value (the final epoch is always scored; this guards the legend)."""
    return float(values[~np.isnan(values)][-1])


def learning_curve(
    epochs: Sequence[int], accuracy: Sequence[float | None], confident: Sequence[float | None]
) -> bytes:
    """Test accuracy and the reference's confident score per epoch, y axis in percent.

    Both scores are plotted because the reference reports the confident score (output > 0.85
    at the true label) while argmax accuracy is what the champion comparison uses. An epoch
    the evaluation schedule skipped (None) is a gap; the title says how many were scored.
    """
    x, acc, conf = learning_curve_data(epochs, accuracy, confident)
    figure = new_figure("learning_curve")
    axes = figure.subplots()
    # the final values go in the legend: labels at the curves' ends collide when they are close
    marked, size = _markers(acc)
    curves = (
        (acc, "-", "o", ACCURACY_COLOUR, "accuracy (largest output is right)"),
        (conf, "--", "s", CONFIDENT_COLOUR, "confident score (output > 0.85)"),
    )
    for values, style, marker, colour, name in curves:
        axes.plot(
            x,
            values,
            style,
            marker=marker if marked else None,
            markersize=size,
            color=colour,
            label=f"{name}: {_last_score(values):.2%}",
        )
    scored = int(np.count_nonzero(~np.isnan(acc)))
    title = "Test scores per epoch"
    if scored < len(acc):
        title += f" ({scored} of {len(acc)} epochs scored)"
    axes.margins(x=0.05, y=0.12)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.set(xlabel="epoch", ylabel="test set score", title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return to_png(figure)


def time_to_accuracy_data(
    seconds: Sequence[float], accuracy: Sequence[float | None]
) -> tuple[FloatArray, FloatArray]:
    """(cumulative training seconds after each epoch, accuracy with NaN where not scored).

    Every epoch's training time counts, scored or not: the x axis is the time it really took.
    """
    durations = series("seconds", seconds)
    acc = scores("accuracy", accuracy)
    same_length(seconds=durations, accuracy=acc)
    if np.any(durations < 0):
        raise ValueError("seconds must be per-epoch durations >= 0")
    return np.cumsum(durations), acc


def time_to_accuracy(seconds: Sequence[float], accuracy: Sequence[float | None]) -> bytes:
    """Accuracy against cumulative training time; `seconds` are per-epoch training durations.

    Durations (as recorded per epoch) are summed here, so the x axis shows what a reader wants
    to know: how long training took to reach each accuracy. Points are labelled with their epoch.
    """
    elapsed, acc = time_to_accuracy_data(seconds, accuracy)
    figure = new_figure("time_to_accuracy")
    axes = figure.subplots()
    _, size = _markers(acc)
    axes.plot(elapsed, acc, "o-", markersize=size, color=ACCURACY_COLOUR)
    scored = [index for index in range(len(acc)) if not np.isnan(acc[index])]
    labelled = scored if len(scored) <= 15 else scored[-1:]
    for index in labelled:
        axes.annotate(
            f"epoch {index + 1}",
            (elapsed[index], acc[index]),
            xytext=(0, 8),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    axes.set_xlim(0, max(float(elapsed[-1]), 1e-9) * 1.1)
    axes.margins(y=0.15)
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.set(
        xlabel="cumulative training time (s)",
        ylabel="test accuracy",
        title=f"Accuracy against training time ({elapsed[-1]:.1f} s in total)",
    )
    axes.grid(alpha=0.3)
    return to_png(figure)


# -- confusion matrix ---------------------------------------------------------------------------
def confusion_heatmap(confusion: npt.ArrayLike) -> bytes:
    """Counts heat map, rows = true label, columns = predicted label, every cell annotated.

    A square-root colour scale keeps the (small) off-diagonal counts visible next to a diagonal
    of about a thousand; the printed counts carry the exact values.
    """
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"confusion must be a square (k, k) matrix, got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("confusion counts must be >= 0")
    classes = counts.shape[0]
    highest = max(float(counts.max()), 1.0)
    figure = new_figure("confusion")
    axes = figure.subplots()
    image = axes.imshow(counts, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0, vmax=highest))
    for (row, column), value in np.ndenumerate(counts):
        dark = value > 0.35 * highest
        axes.text(
            column,
            row,
            f"{int(value)}",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if dark else "black",
        )
    axes.set_xticks(range(classes))
    axes.set_yticks(range(classes))
    axes.set(
        xlabel="predicted label",
        ylabel="true label",
        title=f"Confusion matrix ({int(counts.sum()):,} test digits)",
    )
    axes.tick_params(length=0)
    figure.colorbar(image, ax=axes, shrink=0.85, label="count (square-root scale)")
    return to_png(figure)
