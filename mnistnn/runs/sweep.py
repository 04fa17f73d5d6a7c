"""Hyperparameter sweeps: the grid, one configuration's training, and the charts of the results.

A configuration trains through the same content-addressed run folders as `mnist-training`, so a
configuration trained before (by a sweep or a training run) is reused, not retrained. Configurations
that differ only in their number of epochs share one run: it trains the largest number once and
reads the smaller ones off its per-epoch scores.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mnistnn.config import NetworkConfig
from mnistnn.errors import ConfigError
from mnistnn.report import figures as plots
from mnistnn.report.markdown import data_uri
from mnistnn.runs import steps as training
from mnistnn.runs.folders import open_run, run_folder, run_lock


@dataclass(frozen=True)
class SweepPoint:
    """One row of the sweep's results: a configuration, an epoch count and its scores."""

    hidden_nodes: int
    learning_rate: float
    epochs: int
    batch_size: int
    dtype: str
    seed: int
    accuracy: float
    confident: float
    best_epoch: int
    best_accuracy: float
    seconds: float
    run_dir: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_list(text: str, kind: type[int] | type[float], name: str) -> list[Any]:
    """`"50,100,200"` or a range `"50:200:50"` (start:stop:step, stop included) as a list."""
    try:
        if ":" in text:
            start, stop, step = (kind(part) for part in text.split(":"))
            if step <= 0:
                raise ValueError
            values = []
            value = start
            while value <= stop + (1e-9 if kind is float else 0):
                values.append(value)
                value = kind(value + step)
            return values
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"{name}: expected a comma list or start:stop:step of {kind.__name__}, got {text!r}"
        ) from None


def grid(
    hidden_nodes: Sequence[int],
    learning_rates: Sequence[float],
    batch_sizes: Sequence[int] = (1,),
    dtypes: Sequence[str] = ("float64",),
    seeds: Sequence[int] = (0,),
    init: str = "legacy",
) -> list[NetworkConfig]:
    """Every combination, validated up front so that a bad value fails before any training."""
    for name, values in (
        ("hidden_nodes", hidden_nodes),
        ("learning_rates", learning_rates),
        ("batch_sizes", batch_sizes),
        ("dtypes", dtypes),
        ("seeds", seeds),
    ):
        if not values:
            raise ConfigError(f"{name} must list at least one value")
    configs = [
        NetworkConfig(
            hidden_nodes=hidden,
            learning_rate=lr,
            batch_size=batch,
            dtype=dtype,
            seed=seed,
            init=init,
        )
        for hidden, lr, batch, dtype, seed in itertools.product(
            hidden_nodes, learning_rates, batch_sizes, dtypes, seeds
        )
    ]
    return list(dict.fromkeys(configs))  # duplicates in the lists train once


def train_configuration(
    config: NetworkConfig,
    epochs: int,
    runs_root: str | os.PathLike[str],
    train_parquet: str,
    test_parquet: str,
    train_sha256: str,
    test_sha256: str,
) -> list[dict[str, Any]]:
    """Train (or reuse) `config` for `epochs` epochs; return its per-epoch metrics."""
    folder = run_folder(runs_root, config, train_sha256, test_sha256)
    with run_lock(folder):
        open_run(folder, config, train_sha256, test_sha256)
        for epoch in range(1, epochs + 1):
            training.train_epoch(folder, epoch, config, train_parquet)
            training.evaluate_epoch(folder, epoch, test_parquet)
        metrics = training.finish_run(folder, epochs)
    return [{**row.to_dict(), "run_dir": str(folder.path)} for row in metrics]


def points_for(
    config: NetworkConfig, metrics: list[dict[str, Any]], epoch_counts: Sequence[int]
) -> list[SweepPoint]:
    """The sweep's rows of one trained configuration, one per requested epoch count."""
    rows = []
    for epochs in sorted(set(epoch_counts)):
        upto = metrics[:epochs]
        best = max(upto, key=lambda row: row["accuracy"])
        rows.append(
            SweepPoint(
                hidden_nodes=config.hidden_nodes,
                learning_rate=config.learning_rate,
                epochs=epochs,
                batch_size=config.batch_size,
                dtype=config.dtype,
                seed=config.seed,
                accuracy=float(upto[-1]["accuracy"]),
                confident=float(upto[-1]["confident"]),
                best_epoch=int(best["epoch"]),
                best_accuracy=float(best["accuracy"]),
                seconds=round(sum(row["train_seconds"] for row in upto), 3),
                run_dir=str(upto[-1]["run_dir"]),
            )
        )
    return rows


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
        "hidden_nodes": plots.sweep_chart(
            _lines(at_max, "hidden_nodes", ("learning_rate",)),
            xlabel="hidden nodes",
            title=f"Accuracy against hidden nodes ({max_epochs} epochs)",
        ),
        "learning_rate": plots.sweep_chart(
            _lines(at_max, "learning_rate", ("hidden_nodes",)),
            xlabel="learning rate",
            title=f"Accuracy against learning rate ({max_epochs} epochs)",
            log_x=True,
        ),
        "epochs": plots.sweep_chart(
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


def write_report(folder: Path, text: str) -> Path:
    """Save the sweep report as markdown in `folder`."""
    from mnistnn.core.files import write_bytes_atomic

    path = folder / "sweep-report.md"
    write_bytes_atomic(path, text.encode("utf-8"))
    return path
