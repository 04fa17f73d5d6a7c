"""The report's "New data" section: the inbox batches of a run's snapshot, drift, recent data.

Pure functions from the run's lineage (`lineage["snapshot"]`, as `NewData.to_dict` writes it,
plus the recent-data scores) to markdown and two figures: the champion's accuracy on each batch
against its test accuracy, and the label histograms of the batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from mnistnn.config import N_CLASSES
from mnistnn.report.canvas import DPI, to_png
from mnistnn.report.markdown import data_uri, escape_cell

#: Figure keys of this section (drawn only when the snapshot has accepted batches).
FIGURE_KEYS = ("batch_accuracy", "label_histograms")
FIGURE_FILES = {"batch_accuracy": "batch-accuracy.png", "label_histograms": "label-histograms.png"}
_SIZES = {"batch_accuracy": (800, 450), "label_histograms": (800, 450)}
_MAX_BARS = 30


def headline(snapshot: dict[str, Any] | None) -> str | None:
    """`**New data:** learned from 2 inbox batches (5,400 rows ...)` or None without batches."""
    if not snapshot or not snapshot.get("batches"):
        return None
    batches = snapshot["batches"]
    good = [b for b in batches if b["status"] == "accepted"]
    added = int(snapshot["train_rows"]) - int(snapshot["base"]["train_rows"])
    share = added / max(1, int(snapshot["base"]["train_rows"]))
    recent = snapshot.get("recent") or {}
    text = (
        f"learned from {len(good)} inbox batch{'es' if len(good) != 1 else ''}: "
        f"{added:,} new training rows (+{100 * share:.1f}% on the base data), "
        f"{int(recent.get('rows') or 0):,} held out as recent test data"
    )
    flagged = sum(1 for b in good if b["drift"])
    refused = len(batches) - len(good)
    if flagged:
        text += f"; {flagged} flagged as drift"
    if refused:
        text += f"; {refused} refused"
    return f"**New data:** {text}."


def section(snapshot: dict[str, Any] | None, figures: dict[str, bytes]) -> list[str]:
    """The markdown parts of the section (empty without batches)."""
    if not snapshot or not snapshot.get("batches"):
        return []
    parts = [
        "## New data",
        f"Snapshot {_code(snapshot['sha256'][:16])}: the base file "
        f"({int(snapshot['base']['train_rows']):,} rows) and the inbox batches below, in the "
        f"order they were first seen; {100 * float(snapshot['recent_fraction']):g}% of each "
        "batch (chosen by a hash of the row) is held out as recent test data.",
        _batch_table(snapshot["batches"]),
    ]
    recent = snapshot.get("recent") or {}
    if recent.get("model_accuracy") is not None:
        champion = recent.get("champion_accuracy")
        against = (
            "no champion yet"
            if champion is None
            else f"champion {recent.get('champion_version')} {100 * float(champion):.2f}%"
        )
        decides = (
            "it decided promotion (promote_on_recent)"
            if recent.get("decides_promotion")
            else "promotion was decided on the fixed test set"
        )
        parts.append(
            f"**On the recent test data** ({int(recent['rows']):,} rows): this model "
            f"{100 * float(recent['model_accuracy']):.2f}%, {against}; {decides}."
        )
    for key in FIGURE_KEYS:
        if key in figures:
            caption = _CAPTIONS[key]
            parts.append(f"### {caption}\n\n![{caption}]({data_uri(figures[key])})")
    return parts


def draw(snapshot: dict[str, Any] | None) -> dict[str, bytes]:
    """The section's two figures, or none when no batch was accepted."""
    good = [b for b in (snapshot or {}).get("batches", []) if b["status"] == "accepted"]
    if not good:
        return {}
    return {
        "batch_accuracy": batch_accuracy_figure(good),
        "label_histograms": label_histogram_figure(good),
    }


_CAPTIONS = {
    "batch_accuracy": "Champion accuracy on each new batch against its test accuracy",
    "label_histograms": "Label histograms of the new batches",
}


def batch_accuracy_figure(batches: list[dict[str, Any]]) -> bytes:
    """Bars: the champion's accuracy per batch (red when flagged), a line at its test accuracy."""
    shown = batches[-_MAX_BARS:]
    figure = _figure("batch_accuracy")
    axes = figure.subplots()
    scores = [b["champion_accuracy"] for b in shown]
    x = np.arange(len(shown))
    colours = ["#d62728" if b["drift"] else "#1f77b4" for b in shown]
    axes.bar(x, [0.0 if s is None else s for s in scores], color=colours)
    tests = [float(b["test_accuracy"]) for b in shown if b.get("test_accuracy") is not None]
    for b, position in zip(shown, x, strict=True):
        if b["champion_accuracy"] is None:
            axes.annotate("no champion", (position, 0.02), ha="center", rotation=90, fontsize=8)
    if tests:
        axes.axhline(tests[0], color="#2ca02c", linestyle="--", label="champion on test set")
        axes.legend(loc="lower right")
    axes.set_xticks(x, [_short(b["file"]) for b in shown], rotation=30, ha="right", fontsize=8)
    axes.set_ylim(0, 1)
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.set(ylabel="champion accuracy", title="Champion on each new batch (red: drift)")
    axes.grid(alpha=0.3, axis="y")
    return to_png(figure)


def label_histogram_figure(batches: list[dict[str, Any]]) -> bytes:
    """Each batch's share of each digit, grouped bars per digit."""
    shown = batches[-8:]
    figure = _figure("label_histograms")
    axes = figure.subplots()
    width = 0.8 / len(shown)
    digits = np.arange(N_CLASSES)
    for index, b in enumerate(shown):
        counts = np.asarray(b["label_histogram"] or [0] * N_CLASSES, dtype=np.float64)
        shares = counts / max(1.0, counts.sum())
        axes.bar(digits + index * width - 0.4 + width / 2, shares, width, label=_short(b["file"]))
    axes.axhline(0.1, color="#777777", linestyle=":", linewidth=1)
    axes.set_xticks(digits)
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.set(xlabel="digit", ylabel="share of the batch", title="Label histograms")
    axes.legend(fontsize=7, ncols=2)
    return to_png(figure)


def _batch_table(batches: list[dict[str, Any]]) -> str:
    headers = ("file", "sha256", "status", "accepted", "rejected", "champion", "drift", "notes")
    lines = ["| " + " | ".join(headers) + " |", "|---|---|---|--:|--:|--:|---|---|"]
    for b in batches:
        score = b.get("champion_accuracy")
        notes = b["reason"] if b["status"] != "accepted" else b.get("drift_reason") or ""
        if b.get("replaces"):
            notes = f"replaces {b['replaces'][:16]} (the file changed); {notes}".rstrip("; ")
        if len(b.get("names") or []) > 1:
            notes = f"also named {', '.join(b['names'][1:])}; {notes}".rstrip("; ")
        cells = [
            escape_cell(b["file"]),
            _code(b["sha256"][:16]),
            escape_cell(b["status"]),
            f"{int(b['accepted']):,}",
            f"{int(b['rejected']):,}",
            "–" if score is None else f"{100 * float(score):.2f}%",
            "**yes**" if b["drift"] else "no",
            escape_cell(notes),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(key: str) -> Figure:
    width, height = _SIZES[key]
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def _short(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _code(text: str) -> str:
    return f"`{text}`"
