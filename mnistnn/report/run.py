"""Everything a finished run shows a person: figures (PNG files) and the markdown report.

Pure library code (no Prefect): `flows/publish.py` turns the result into artifacts, and a user
without the UI finds the same figures in the run's `figures/` folder and the report as `report.md`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistnn.core import locations
from mnistnn.data.parquet import load_arrays
from mnistnn.model.checkpoint import load_weights
from mnistnn.model.metrics import confusion_matrix, precision_recall
from mnistnn.report import markdown as report
from mnistnn.report import new_data, promotion
from mnistnn.report.digits import backward_query_images, confident_mistakes, hidden_weight_tiles
from mnistnn.report.figures import confusion_heatmap, learning_curve, time_to_accuracy
from mnistnn.runs.folders import RunFolder, read_json
from mnistnn.runs.records import RunLineage
from mnistnn.runs.steps import read_metrics


@dataclass(frozen=True)
class RunReport:
    """The rendered report: markdown (figures inlined), epoch table rows and figure files."""

    markdown: str
    table: list[dict[str, Any]]
    figures: dict[str, str]
    accuracy: float
    confident: float
    promotion: str = ""


def comparison_line(decision: dict[str, Any] | None) -> str | None:
    """The headline's sentence about the champion, or None for the first model."""
    if decision is None:
        return "not registered (register_model=False)"
    if decision.get("champion_accuracy") is None:
        return None
    return str(decision["reason"])


def render_run_report(
    folder: RunFolder,
    test_parquet: str | os.PathLike[str],
    lineage: RunLineage,
    decision: dict[str, Any] | None,
) -> RunReport:
    """Draw every figure, write them and `report.md` into the run folder, return the report."""
    history = read_metrics(folder).records
    network = load_weights(folder.weights)
    pixels, labels = load_arrays(test_parquet)
    outputs = network.query(pixels)
    confusion = confusion_matrix(np.argmax(outputs, axis=1), labels, outputs.shape[1])
    precision, recall = precision_recall(confusion)
    epochs = [row.epoch for row in history]
    accuracy = [row.accuracy for row in history]
    figures = {
        "learning_curve": learning_curve(epochs, accuracy, [row.confident for row in history]),
        "confusion": confusion_heatmap(confusion),
        "mistakes": confident_mistakes(pixels, labels, outputs),
        "hidden_weights": hidden_weight_tiles(network.w_input_hidden),
        "backward_query": backward_query_images(
            np.stack([network.backward_query(digit) for digit in range(outputs.shape[1])])
        ),
        "time_to_accuracy": time_to_accuracy([row.train_seconds for row in history], accuracy),
    }
    snapshot = lineage.snapshot
    new_figures = new_data.draw(snapshot)
    names = {**report.figure_filenames(figures), **new_data.FIGURE_FILES}
    figure_paths = {
        key: _write_figure(folder, names[key], png)
        for key, png in {**figures, **new_figures}.items()
    }
    markdown = report.markdown_report(
        title=f"MNIST training run {folder.name}",
        config=(read_json(folder.run_json) or {}).get("config", {}),
        history=history,
        lineage=[lineage.train, lineage.test],
        precision=precision.tolist(),
        recall=recall.tolist(),
        figures=figures,
        comparison=comparison_line(decision),
        run_dir=str(folder.path.resolve() if isinstance(folder.path, Path) else folder.path),
        settings=lineage.settings,
        parameters=lineage.parameters,
        new_data_headline=new_data.headline(snapshot),
        new_data=new_data.section(snapshot, new_figures),
    )
    promotion_md = _promotion(folder, decision, figure_paths)
    markdown = markdown.rstrip("\n") + "\n\n" + promotion_md if promotion_md else markdown
    locations.write_bytes(folder.report, markdown.encode("utf-8"))
    return RunReport(
        markdown=markdown,
        table=report.epoch_table_rows([row.to_dict() for row in history]),
        figures=figure_paths,
        accuracy=float(history[-1].accuracy or 0.0),
        confident=float(history[-1].confident or 0.0),
        promotion=promotion_md,
    )


def _write_figure(folder: RunFolder, name: str, png: bytes) -> str:
    """Write one figure into the run's `figures/`; its path or URL."""
    path = locations.join(folder.figures, name)
    locations.write_bytes(path, png)
    return str(path)


def _promotion(folder: RunFolder, decision: dict[str, Any] | None, paths: dict[str, str]) -> str:
    """The Promotion section, its per-class recall figure written beside the others."""
    evidence = (decision or {}).get("evidence")
    png = None if not evidence else promotion.recall_figure(evidence)
    if png is not None:
        paths["promotion_recall"] = _write_figure(folder, promotion.FIGURE_FILE, png)
    return promotion.section(decision, png)
