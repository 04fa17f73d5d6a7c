"""The batch-scoring report: pure functions from scoring records to a table and markdown, no I/O.

The `mnist-batch-predict` flow publishes `table_rows` as the `mnist-batch-predictions` table
artifact and `scoring_report` as its markdown report; digit grids are embedded as data URIs.
Inputs are plain mappings (the flow's per-input records), so this module needs nothing from
`mnistnn.predict`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from mnistnn.config import N_CLASSES
from mnistnn.report.canvas import DPI, to_png
from mnistnn.report.digits import frame_image, tile
from mnistnn.report.markdown import data_uri, escape_cell

#: Width of a digit grid in pixels, and the height of one row of tiles.
GRID_WIDTH: Final = 800
_TILE_ROW: Final = 118
_COLUMNS: Final = 8


def histogram_text(label_counts: Sequence[int]) -> str:
    """`0:12 1:40 ...`: the predicted-label counts in one cell."""
    return " ".join(f"{digit}:{count}" for digit, count in enumerate(label_counts))


def _status(record: Mapping[str, Any]) -> str:
    if record.get("error"):
        return f"refused: {record['error']}"
    return "reused (already scored)" if record.get("reused") else "scored"


def table_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per input for the table artifact."""
    rows = []
    for record in records:
        counts = record.get("label_counts") or []
        rows.append(
            {
                "file": record["file"],
                "status": _status(record),
                "rows": record.get("rows", 0),
                "scored": record.get("scored", 0),
                "failed": record.get("failed", 0),
                "labels": histogram_text(counts) if counts else "",
                "mean_confidence": _rounded(record.get("mean_confidence")),
                "agreement": _rounded(record.get("agreement")),
                "review": record.get("review_rows", 0),
            }
        )
    return rows


def _rounded(value: object) -> float | None:
    return None if value is None else round(float(value), 4)  # type: ignore[arg-type]


def digit_grid(pixels: npt.ArrayLike, captions: Sequence[str], title: str) -> bytes:
    """A PNG grid of (n, 784) digits, one caption under each (n >= 1), 8 to a row."""
    images = np.asarray(pixels)
    if images.ndim != 2 or images.shape[0] == 0 or images.shape[0] != len(captions):
        raise ValueError(
            f"need (n, 784) pixels and n captions, got {images.shape}, {len(captions)}"
        )
    count = images.shape[0]
    rows = -(-count // _COLUMNS)
    height = 60 + rows * _TILE_ROW
    figure = Figure(figsize=(GRID_WIDTH / DPI, height / DPI), dpi=DPI, layout="constrained")
    grid = figure.subplots(rows, _COLUMNS, squeeze=False)
    for slot, axes in enumerate(grid.flat):
        if slot >= count:
            axes.set_axis_off()
            continue
        frame_image(axes)
        axes.imshow(tile(images[slot]), cmap="Greys", vmin=0, vmax=255)
        axes.set_title(captions[slot], fontsize=7)
    figure.suptitle(title)
    return to_png(figure)


def scoring_report(
    summary: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    least_confident: tuple[npt.ArrayLike, Sequence[str]],
    disagreements: tuple[npt.ArrayLike, Sequence[str]],
    probability_note: str,
) -> str:
    """The run's markdown: headline, per-input table, class histogram, grids, failures."""
    champion = summary["model_version"]
    challenger = summary.get("challenger_version")
    fresh = [r for r in records if not r.get("reused") and not r.get("error")]
    lines = [
        "# Batch predictions",
        "",
        f"Model **{champion}** (pinned for the whole run)"
        + (f", shadowed by challenger **{challenger}**." if challenger else "; no challenger."),
        f"Inbox `{summary.get('inbox', '')}`: {len(records)} input(s), {len(fresh)} scored in "
        f"this run, {sum(1 for r in records if r.get('reused'))} already scored, "
        f"{sum(1 for r in records if r.get('error'))} refused. Review threshold: confidence "
        f"< {summary.get('threshold', 0.6):g}.",
        "",
        "## Inputs",
        "",
        _inputs_table(records),
        "",
        "## Predicted classes",
        "",
        _histogram_table(records),
        "",
    ]
    if challenger:
        lines += ["## Champion and challenger", "", _agreement_lines(records, challenger), ""]
    lines += _grid_section(
        "Least confident digits", least_confident, "least confident digits scored in this run"
    )
    if challenger:
        lines += _grid_section(
            "Disagreements", disagreements, f"digits {champion} and {challenger} disagree on"
        )
    lines += _failures_section(records)
    lines += [
        "## Notes",
        "",
        f"- {probability_note}",
        "- Outputs: `data/predictions/<input-sha16>-<version>[-vs-<challenger>].parquet`; "
        "review queue: `data/review/<input-sha16>.csv` (fill in `label`, then "
        "`mnistnn label import FILE`).",
        "",
    ]
    return "\n".join(lines)


def _inputs_table(records: Sequence[Mapping[str, Any]]) -> str:
    header = "| input | status | rows | scored | failed | mean confidence | agreement | review |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in table_rows(records):
        cells = [
            escape_cell(row["file"]),
            escape_cell(row["status"]),
            f"{row['rows']:,}",
            f"{row['scored']:,}",
            f"{row['failed']:,}",
            "" if row["mean_confidence"] is None else f"{row['mean_confidence']:.4f}",
            "" if row["agreement"] is None else f"{row['agreement']:.2%}",
            f"{row['review']:,}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _histogram_table(records: Sequence[Mapping[str, Any]]) -> str:
    totals = np.zeros(N_CLASSES, dtype=np.int64)
    for record in records:
        counts = record.get("label_counts") or []
        if counts:
            totals += np.asarray(counts, dtype=np.int64)
    total = int(totals.sum())
    header = "| digit | " + " | ".join(str(d) for d in range(N_CLASSES)) + " |"
    align = "|---|" + "---:|" * N_CLASSES
    counts_row = "| count | " + " | ".join(f"{int(c):,}" for c in totals) + " |"
    share_row = (
        "| share | " + " | ".join(f"{c / total:.1%}" if total else "" for c in totals) + " |"
    )
    return "\n".join([header, align, counts_row, share_row])


def _agreement_lines(records: Sequence[Mapping[str, Any]], challenger: str) -> str:
    scored = agreed = 0.0
    for record in records:
        if record.get("agreement") is not None and record.get("scored"):
            scored += record["scored"]
            agreed += record["agreement"] * record["scored"]
    if not scored:
        return f"No digit was scored by both models (challenger {challenger})."
    return (
        f"The challenger agrees with the champion on **{agreed / scored:.2%}** of "
        f"{int(scored):,} digits; nothing it says changes the champion's predictions."
    )


def _grid_section(title: str, digits: tuple[npt.ArrayLike, Sequence[str]], what: str) -> list[str]:
    pixels, captions = digits
    lines = [f"## {title}", ""]
    if len(captions) == 0:
        return [*lines, f"No {what}.", ""]
    png = digit_grid(pixels, captions, f"{title} ({len(captions)} shown)")
    return [*lines, f"![{what}]({data_uri(png)})", ""]


def _failures_section(records: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["## Failures", ""]
    rows = []
    for record in records:
        if record.get("error"):
            rows.append((record["file"], "", record["error"]))
        for source, row, reason in record.get("first_failures") or []:
            rows.append((source, "" if row is None else str(row), reason))
    if not rows:
        return [*lines, "None: every row of every input was scored.", ""]
    lines += ["| source | row | reason |", "|---|---:|---|"]
    lines += [f"| {escape_cell(s)} | {r} | {escape_cell(why)} |" for s, r, why in rows]
    total = sum(int(record.get("failed") or 0) for record in records)
    lines += [
        "",
        f"{total:,} failed row(s) in all; each input's full list is in its "
        "`<key>.failures.csv` beside the predictions.",
        "",
    ]
    return lines


__all__ = ["digit_grid", "histogram_text", "scoring_report", "table_rows"]
