"""Hand a finished run's model to the registry, judged by the promotion gate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mnistnn.data.parquet import load_arrays
from mnistnn.model.checkpoint import load_weights
from mnistnn.registry.gate import Gate, Labelled
from mnistnn.registry.policy import PromotionPolicy
from mnistnn.registry.store import ModelRegistry
from mnistnn.runs.folders import RunFolder
from mnistnn.runs.records import RunLineage
from mnistnn.runs.steps import read_metrics


def labelled(parquet: str | os.PathLike[str], name: str | None = None) -> Labelled:
    """An ingested Parquet file's digits, named by its file name unless `name` is given."""
    pixels, labels = load_arrays(parquet)
    return Labelled(name or Path(os.fspath(parquet)).name, pixels, labels)


def register_run(
    folder: RunFolder,
    models_dir: str | os.PathLike[str],
    test_parquet: str | os.PathLike[str],
    lineage: RunLineage,
    *,
    min_delta: float = 0.0,
    flow_run_id: str | None = None,
    rule: PromotionPolicy | None = None,
    recent_parquet: str | None = None,
    recent_sha256: str | None = None,
    decide_on_recent: bool = False,
    ask: bool = False,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Register the run's final weights; return the promotion decision as a dict.

    The gate compares both models on the test set, with the recent data (when given) as a
    guardrail; `decide_on_recent` makes the recent data decide instead of the test set.
    """
    network = load_weights(folder.weights)
    final = read_metrics(folder).final
    data = labelled(test_parquet, "the test set")
    recent = None if recent_parquet is None else labelled(recent_parquet, "the recent data")
    test_sha = lineage.test.sha256
    if decide_on_recent and recent is not None and recent_sha256 is not None:
        data, recent, test_sha = recent, None, recent_sha256
    registry = ModelRegistry(models_dir)
    known = set(registry.names())
    gate = Gate(
        registry,
        network,
        data,
        rule or PromotionPolicy(min_delta=min_delta),
        recent,
        ask,
    )
    decision = registry.register(
        network,
        metrics=metrics
        or {"accuracy": final.accuracy, "confident": final.confident, "mse": final.mse},
        test_sha256=test_sha,
        train_sha256=lineage.train.sha256,
        run_dir=str(folder.path),
        flow_run_id=flow_run_id,
        assess=gate,
    ).to_dict()
    if decision["version"] in known:  # a re-run of a finished run: nothing new was registered
        first = decision["reason"]
        decision["reason"] = f"already registered as {decision['version']} (then: {first})"
    return decision
