"""Hand a finished run's model to the registry, scored fairly against the champion."""

from __future__ import annotations

import os
from typing import Any

from mnistnn.data.parquet import load_arrays
from mnistnn.model.checkpoint import load_weights
from mnistnn.model.metrics import accuracy
from mnistnn.model.network import NeuralNetwork
from mnistnn.registry.store import ModelRegistry
from mnistnn.runs.folders import RunFolder
from mnistnn.runs.records import RunLineage
from mnistnn.runs.steps import read_metrics


def register_run(
    folder: RunFolder,
    models_dir: str | os.PathLike[str],
    test_parquet: str | os.PathLike[str],
    lineage: RunLineage,
    *,
    min_delta: float = 0.0,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Register the run's final weights; return the promotion decision as a dict."""
    network = load_weights(folder.weights)
    final = read_metrics(folder).final

    def rescore(champion: NeuralNetwork) -> float:
        pixels, labels = load_arrays(test_parquet)
        return accuracy(champion.query(pixels), labels)

    registry = ModelRegistry(models_dir)
    known = {version.version for version in registry.versions()}
    decision = registry.register(
        network,
        metrics={
            "accuracy": final.accuracy,
            "confident": final.confident,
            "mse": final.mse,
        },
        test_sha256=lineage.test.sha256,
        train_sha256=lineage.train.sha256,
        run_dir=str(folder.path),
        flow_run_id=flow_run_id,
        min_delta=min_delta,
        rescore=rescore,
    ).to_dict()
    if decision["version"] in known:  # a re-run of a finished run: nothing new was registered
        first = decision["reason"]
        decision["reason"] = f"already registered as {decision['version']} (then: {first})"
    return decision
