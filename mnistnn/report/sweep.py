"""The sweep's charts (accuracy against hidden nodes, learning rate, epochs) and its report text.

Rashid's book draws its experiments this way; the points come from `mnistnn.runs.sweep`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.ticker import PercentFormatter

from mnistnn.report.canvas import new_figure, same_length, series, to_png
from mnistnn.report.markdown import data_uri
from mnistnn.runs.sweep import SweepPoint


def sweep_chart(
    lines: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    title: str,
    log_x: bool = False,
) -> bytes:
    """Final test accuracy against one hyperparameter, one line per setting of the others.

    `lines` maps a legend label to (x values, accuracies), as Rashid's book draws its
    experiments with hidden nodes, learning rate and epochs.
    """
    if not lines:
        raise ValueError("lines must hold at least one series")
    figure = new_figure("sweep")
    axes = figure.subplots()
    for label, (xs, ys) in lines.items():
        x = series(f"{label} x", xs)
        y = series(f"{label} accuracy", ys)
        same_length(x=x, accuracy=y)
        order = np.argsort(x)
        axes.plot(x[order], y[order], "o-", label=label)
    if log_x:
        axes.set_xscale("log")
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.margins(y=0.15)
    axes.set(xlabel=xlabel, ylabel="final test accuracy", title=title)
    axes.grid(alpha=0.3)
    if len(lines) > 1 or next(iter(lines)):
        axes.legend(loc="best", fontsize=8)
    return to_png(figure)


def _lines(
    points: Sequence[SweepPoint], x_field: str, group_fields: Sequence[str]
) -> dict[str, tuple[list[float], list[float]]]:
    """Points grouped into chart lines: x = `x_field`, one line per value of the other fields."""
    lines: dict[str, tuple[list[float], list[float]]] = {}
    for point in points:
        record = point.to_dict()
        label = ", ".join(f"{field.replace('_', ' ')} {record[field]}" for field in group_fields)
        xs, ys = lines.setdefault(label, ([], []))
        xs.append(float(record[x_field]))
        ys.append(point.accuracy)
    return lines


def charts(points: Sequence[SweepPoint]) -> dict[str, bytes]:
    """The book's charts: accuracy against hidden nodes, learning rate and epochs."""
    max_epochs = max(point.epochs for point in points)
    at_max = [point for point in points if point.epochs == max_epochs]
    return {
        "hidden_nodes": sweep_chart(
            _lines(at_max, "hidden_nodes", ("learning_rate",)),
            xlabel="hidden nodes",
            title=f"Accuracy against hidden nodes ({max_epochs} epochs)",
        ),
        "learning_rate": sweep_chart(
            _lines(at_max, "learning_rate", ("hidden_nodes",)),
            xlabel="learning rate",
            title=f"Accuracy against learning rate ({max_epochs} epochs)",
            log_x=True,
        ),
        "epochs": sweep_chart(
            _lines(points, "epochs", ("hidden_nodes", "learning_rate")),
            xlabel="epochs",
            title="Accuracy against epochs",
        ),
    }


def markdown(points: Sequence[SweepPoint], figures: dict[str, bytes], seconds: float) -> str:
    """The sweep report: the best configuration, the results table, and the charts."""
    best = max(points, key=lambda point: (point.accuracy, -point.seconds))
    lines = [
        f"# MNIST sweep: {len(points)} results in {seconds:.1f} s",
        "",
        f"**Best:** hidden nodes {best.hidden_nodes}, learning rate {best.learning_rate}, "
        f"{best.epochs} epochs, batch {best.batch_size}, {best.dtype}, seed {best.seed}: "
        f"accuracy **{best.accuracy:.4f}** (confident {best.confident:.4f})",
        "",
        "| hidden | lr | epochs | batch | dtype | seed | accuracy | best epoch | seconds |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for point in sorted(points, key=lambda p: -p.accuracy):
        mark = "**" if point == best else ""
        lines.append(
            f"| {point.hidden_nodes} | {point.learning_rate} | {point.epochs} | "
            f"{point.batch_size} | {point.dtype} | {point.seed} | "
            f"{mark}{point.accuracy:.4f}{mark} | {point.best_epoch} | {point.seconds:.1f} |"
        )
    for key, png in figures.items():
        lines += [
            "",
            f"## Accuracy against {key.replace('_', ' ')}",
            "",
            f"![{key}]({data_uri(png)})",
        ]
    return "\n".join(lines) + "\n"
