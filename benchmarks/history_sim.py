"""A simulated history of nightly cycles, cheap enough for thousands of batches.

Each night: a 20-row labelled batch lands in the inbox and an unlabelled 20-row input in the
scoring inbox; the watch pass ingests the batch (`flows.watch.scan`); the nightly run's steps
run as the flow runs them (its tasks' own functions, no Prefect server): ingest, the inbox scan
with the snapshot manifest and the drift check, a small retrain (16 hidden nodes, 2 epochs on a
300-row base), registration and promotion, the report; `models list`; then scoring with the
champion and the challenger. Each step is timed; `FIXED` names the fixed-overhead steps (all
but training, evaluation, scoring and building the recent test data, which is every batch's
held-out rows and so grows with the data like the training set). Used by `bench_history` and
by the retention tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mnistnn.cli.models import LAST
from mnistnn.config import DataPaths, NetworkConfig
from mnistnn.core import locations

BATCH_ROWS = 20
BASE_ROWS = 300
TEST_ROWS = 200
EPOCHS = 2
CONFIG = NetworkConfig(hidden_nodes=16, learning_rate=0.1)
FIXED = ("watch", "inbox", "register", "report", "models list")


def csv_bytes(pixels: np.ndarray, labels: np.ndarray | None) -> bytes:
    """MNIST CSV text: label then 784 pixels (no label column when `labels` is None)."""
    rows = pixels.astype(np.int64) if labels is None else np.column_stack([labels, pixels])
    return "".join(",".join(map(str, row)) + "\n" for row in rows.tolist()).encode()


class History:
    """A data directory (local or `s3://`) that nights are simulated in."""

    def __init__(self, root: str | Path, scratch: Path, pool: tuple[np.ndarray, np.ndarray]):
        self.paths = DataPaths.at(root)
        self.pixels, self.labels = pool
        scratch.mkdir(parents=True, exist_ok=True)
        self.train_csv = scratch / "base.csv"
        self.test_csv = scratch / "test.csv"
        if not self.train_csv.exists():
            self.train_csv.write_bytes(csv_bytes(self.pixels[:BASE_ROWS], self.labels[:BASE_ROWS]))
            end = len(self.labels)
            self.test_csv.write_bytes(
                csv_bytes(self.pixels[end - TEST_ROWS :], self.labels[end - TEST_ROWS :])
            )
        self.timings: dict[str, float] = {}

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - started

    def rows(self, index: int, rows: int = BATCH_ROWS) -> tuple[np.ndarray, np.ndarray]:
        """`rows` rows of batch `index`, taken from the pool after the base rows."""
        span = len(self.labels) - BASE_ROWS - TEST_ROWS - rows
        start = BASE_ROWS + (index * 7919) % span  # a prime stride: batches differ
        return self.pixels[start : start + rows], self.labels[start : start + rows]

    def land(self, index: int) -> None:
        """Labelled batch `index` lands in the inbox (an hour ago: settled)."""
        target = locations.join(self.paths.incoming, f"batch-{index:05d}.csv")
        locations.write_bytes(target, csv_bytes(*self.rows(index)))
        if isinstance(target, Path):
            os.utime(target, (time.time() - 3600, time.time() - 3600))

    def land_unlabelled(self, index: int) -> None:
        target = locations.join(self.paths.unlabelled, f"digits-{index:05d}.csv")
        locations.write_bytes(target, csv_bytes(self.rows(index + 100_000)[0], None))

    def night(self, index: int, *, score: bool = True, report: bool = True) -> dict[str, float]:
        """One nightly cycle; the seconds of each step."""
        from flows.watch import scan

        self.timings = {}
        self.land(index)
        if score:
            self.land_unlabelled(index)
        with self.timed("watch"):
            scan(self.paths.incoming, self.paths, train_csv=self.train_csv, settle_seconds=0)
        self.nightly_run(report=report)
        if score:
            with self.timed("score"):
                self.score()
        return self.timings

    def nightly_run(self, *, report: bool = True) -> dict[str, Any]:
        """The `mnist-training` flow's steps, in its order, timed."""
        import flows.training_tasks as training_tasks
        from flows.tasks import ingest_task
        from flows.training_steps import _train_lineage
        from flows.training_tasks import new_data_task
        from mnistnn.registry.from_run import register_run
        from mnistnn.registry.store import ModelRegistry
        from mnistnn.report.run import render_run_report
        from mnistnn.runs.records import DataLineage, RunLineage

        paths = self.paths
        original = training_tasks.write_recent_parquet

        def recent(snapshot: Any) -> Any:  # evaluation data: every batch's held-out rows
            with self.timed("recent data"):
                return original(snapshot)

        training_tasks.write_recent_parquet = recent  # type: ignore[assignment]
        try:
            with self.timed("inbox"):
                train = ingest_task.fn("train", str(self.train_csv), str(paths.processed), 0.0)
                test = ingest_task.fn("test", str(self.test_csv), str(paths.processed), 0.0)
                new = new_data_task.fn(
                    str(paths.incoming), str(paths.root), train, test.sha256, 0.0, 0.0, 0.1, 0.05
                )
                lineage = RunLineage(
                    _train_lineage(train, new),
                    DataLineage.of(test, "test"),
                    {"preset": None},
                    snapshot=new.to_dict() if new.batches else None,
                )
        finally:
            training_tasks.write_recent_parquet = original
        self.timings["inbox"] -= self.timings.get("recent data", 0.0)
        with self.timed("train"):
            folder = self.train(new.snapshot, test.sha256, test.parquet, lineage)
        with self.timed("register"):
            decision = register_run(folder, paths.models, test.parquet, lineage)
        if report:  # figures: seconds, the same at any history size
            with self.timed("report"):
                render_run_report(folder, test.parquet, lineage, decision)
        with self.timed("models list"):
            ModelRegistry(paths.models).newest(LAST)  # what `mnistnn models list` reads
        return decision

    def train(self, snapshot: Any, test_sha256: str, test_parquet: str, lineage: Any) -> Any:
        """The run of this snapshot: trained and scored (as the flow does, under its lock)."""
        from mnistnn.runs import steps
        from mnistnn.runs.folders import open_run, run_folder, run_lock

        folder = run_folder(self.paths.runs, CONFIG, snapshot.sha256, test_sha256)
        with run_lock(folder):
            extra = {"snapshot": {"sha256": snapshot.sha256, "manifest": snapshot.manifest}}
            open_run(folder, CONFIG, snapshot.sha256, test_sha256, extra=extra)
            for epoch in range(1, EPOCHS + 1):
                steps.train_epoch(folder, epoch, CONFIG, snapshot.train_data, lineage, threads=1)
                steps.evaluate_epoch(folder, epoch, test_parquet)
            steps.finish_run(folder, EPOCHS)
        return folder

    def score(self) -> None:
        """Score every unlabelled input with the champion, the challenger in shadow."""
        from flows.scoring_tasks import resolve_models_task
        from mnistnn.predict.batch import PinnedModel, score_input
        from mnistnn.predict.inputs import discover, identify, localise
        from mnistnn.registry.store import ModelRegistry

        pinned = resolve_models_task.fn(str(self.paths.models), None)
        registry = ModelRegistry(self.paths.models)
        champion = PinnedModel(pinned.champion, registry.load(pinned.champion))
        challenger = (
            None
            if pinned.challenger is None
            else PinnedModel(pinned.challenger, registry.load(pinned.challenger))
        )
        for item in discover(self.paths.unlabelled).inputs:
            local = localise(item)
            score_input(
                local,
                identify(local),
                champion,
                challenger,
                predictions_dir=str(self.paths.predictions),
                review_dir=str(self.paths.review),
            )

    def disk(self) -> int:
        """Bytes under the data directory."""
        return sum(size for size, _ in self.paths.store.list_info("").values())


def retrain(folder_path: str | Path, run: dict[str, Any], config: dict[str, Any]) -> bytes:
    """Train a run again into `folder_path` from its kept snapshot; the final weights' bytes."""
    from mnistnn.model.checkpoint import weights_bytes
    from mnistnn.runs import steps
    from mnistnn.runs.folders import RunFolder, open_run

    folder = RunFolder(folder_path)
    network_config = NetworkConfig(**config)
    open_run(folder, network_config, run["train_sha256"], run["test_sha256"])
    manifest = run["snapshot"]["manifest"]
    outcome = None
    for epoch in range(1, EPOCHS + 1):
        outcome = steps.train_epoch(folder, epoch, network_config, manifest, threads=1)
    assert outcome is not None
    from mnistnn.model.checkpoint import load_checkpoint

    return weights_bytes(load_checkpoint(outcome.checkpoint)[0])
