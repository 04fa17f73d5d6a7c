"""Hyperparameter sweeps: the grid, one configuration's training, and its rows of results.

A configuration trains through the same content-addressed run folders as `mnist-training`, so a
configuration trained before (by a sweep or a training run) is reused, not retrained. Configurations
that differ only in their number of epochs share one run: it trains the largest number once and
reads the smaller ones off its per-epoch scores. The charts and the report text are drawn by
`mnistnn.report.sweep`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mnistnn.config import NetworkConfig
from mnistnn.core import locations
from mnistnn.errors import ConfigError
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
    threads: int | None = 1,
) -> list[dict[str, Any]]:
    """Train (or reuse) `config` for `epochs` epochs; return its per-epoch metrics.

    One thread per configuration by default: a sweep is already parallel over configurations,
    so a second thread per sample would only contend for the same cores (same weights either
    way, bit for bit). `threads=None` follows `$MNISTNN_THREADS`.
    """
    folder = run_folder(runs_root, config, train_sha256, test_sha256)
    with run_lock(folder):
        open_run(folder, config, train_sha256, test_sha256)
        for epoch in range(1, epochs + 1):
            training.train_epoch(folder, epoch, config, train_parquet, threads=threads)
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


def write_report(folder: str | os.PathLike[str], text: str) -> locations.Location:
    """Save the sweep report as markdown in `folder` (a local folder or an `s3://` prefix)."""
    path = locations.join(folder, "sweep-report.md")
    locations.write_bytes(path, text.encode("utf-8"))
    return path
