"""Publish a finished run as Prefect artifacts (stable kebab-case keys keep a history per key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from mnistnn.report.run import render_run_report
from mnistnn.runs.folders import RunFolder
from mnistnn.runs.records import RunLineage

TABLE_KEY = "mnist-epoch-metrics"
REPORT_KEY = "mnist-training-report"
LINK_KEY = "mnist-run-folder"
PROMOTION_KEY = "mnist-promotion"


def publish_run(
    folder: RunFolder,
    test_parquet: str,
    lineage: RunLineage,
    decision: dict[str, Any] | None,
) -> str:
    """Create the table, report and link artifacts; return the report's path."""
    rendered = render_run_report(folder, test_parquet, lineage, decision)
    create_table_artifact(
        key=TABLE_KEY,
        table=rendered.table,
        description=f"Per-epoch test scores of run {folder.name}",
    )
    create_markdown_artifact(
        key=REPORT_KEY,
        markdown=rendered.markdown,
        description=(
            f"accuracy {rendered.accuracy:.4f}, confident {rendered.confident:.4f} ({folder.name})"
        ),
    )
    if rendered.promotion:
        create_markdown_artifact(
            key=PROMOTION_KEY,
            markdown=rendered.promotion,
            description=str(decision["reason"]) if decision else "promotion",
        )
    weights = folder.weights.resolve() if isinstance(folder.weights, Path) else folder.weights
    create_link_artifact(
        key=LINK_KEY,
        link=weights.as_uri() if isinstance(weights, Path) else weights,
        link_text=f"final weights of run {folder.name}: {weights}",
        description="Run folder: checkpoints, metrics.json, figures/, report.md",
    )
    return str(folder.report)
