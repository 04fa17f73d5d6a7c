"""The run report as markdown: pure functions from run records to text, no prefect, no I/O.

The flow publishes the text as a Prefect markdown artifact and writes it into the run folder;
figures are embedded as base64 data URIs so the report is one self-contained document.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mnistnn.runs.records import DataLineage, EpochRecord
from mnistnn.types import FloatArray

#: Report order of the known figures; any other figure key follows, in the order given.
FIGURE_ORDER: tuple[str, ...] = (
    "learning_curve",
    "confusion",
    "mistakes",
    "hidden_weights",
    "backward_query",
    "time_to_accuracy",
)

FIGURE_CAPTIONS: dict[str, str] = {
    "learning_curve": "Test accuracy and confident score per epoch",
    "confusion": "Confusion matrix on the test set",
    "mistakes": "Most confidently wrong test digits",
    "hidden_weights": "Input weights of each hidden node",
    "backward_query": "Back-query: what the network imagines for each digit",
    "time_to_accuracy": "Accuracy against cumulative training time",
}

_FIGURE_FILENAMES: dict[str, str] = {
    "learning_curve": "learning-curve.png",
    "confusion": "confusion-matrix.png",
    "mistakes": "confident-mistakes.png",
    "hidden_weights": "hidden-weights.png",
    "backward_query": "backward-query.png",
    "time_to_accuracy": "time-to-accuracy.png",
}

#: Columns of `epoch_table_rows`, in order.
EPOCH_COLUMNS: tuple[str, ...] = (
    "epoch",
    "accuracy",
    "confident",
    "running_mean_accuracy",
    "mse",
    "train_seconds",
    "eval_seconds",
)

_EPOCH_HEADERS = (
    "epoch",
    "accuracy",
    "confident",
    "running mean accuracy",
    "MSE",
    "train s",
    "eval s",
)
_EPOCH_FORMATS = ("{:d}", "{:.4f}", "{:.4f}", "{:.4f}", "{:.6f}", "{:.3f}", "{:.3f}")
_HISTORY_KEYS = ("epoch", "accuracy", "confident", "mse", "train_seconds", "eval_seconds")
_LINEAGE_KEYS = ("role", "source_name", "sha256", "rows_read", "rows_accepted", "rows_rejected")
_ROLE_ORDER = {"train": 0, "test": 1}


# -- small helpers ------------------------------------------------------------------------------
def data_uri(png: bytes) -> str:
    """`data:image/png;base64,...`: lets the report embed figures without separate files."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def escape_cell(value: object) -> str:
    """Text safe inside a markdown table cell: a raw `|` would split the cell, a newline the row."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines())


def _code(text: str) -> str:
    """Inline code span whose fence is longer than any backtick run inside (paths may hold any)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool]) -> str:
    """GFM table from already formatted cells; numeric columns are right-aligned for reading."""
    lines = ["| " + " | ".join(escape_cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---:" if right else "---" for right in numeric) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def _percent(fraction: float) -> str:
    """0.97123 -> '97.12%': the headline reads in percent, as the reference prints it."""
    return f"{fraction * 100:.2f}%"


# -- figures ------------------------------------------------------------------------------------
def _ordered_keys(keys: Iterable[str]) -> list[str]:
    """Known figure keys in report order, then unknown ones in their given order."""
    given = list(dict.fromkeys(keys))
    known = [key for key in FIGURE_ORDER if key in given]
    return known + [key for key in given if key not in FIGURE_ORDER]


def _slug(key: str) -> str:
    """File-name-safe form of an unknown figure key: 'My plot!' -> 'my-plot'."""
    return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") or "figure"


def figure_filenames(keys: Iterable[str] = FIGURE_ORDER) -> dict[str, str]:
    """Figure key -> PNG file name in the run folder (`learning_curve` -> `learning-curve.png`).

    Pass the figures dict (or its keys); the result is in report order, and unknown keys get a
    slug of their name, made unique so that no figure overwrites another.
    """
    names: dict[str, str] = {}
    taken: set[str] = set()
    for key in _ordered_keys(keys):
        name = _FIGURE_FILENAMES.get(key) or f"{_slug(key)}.png"
        stem, suffix = name.removesuffix(".png"), 2
        while name in taken:
            name, suffix = f"{stem}-{suffix}.png", suffix + 1
        taken.add(name)
        names[key] = name
    return names


def _caption(key: str) -> str:
    """Caption of a figure; unknown keys read as their words ('loss_curve' -> 'Loss curve')."""
    return FIGURE_CAPTIONS.get(key) or key.replace("_", " ").strip().capitalize() or "Figure"


def _figures_section(figures: Mapping[str, bytes]) -> list[str]:
    """One heading and one embedded image per figure."""
    parts = ["## Figures"]
    for key in _ordered_keys(figures):
        caption = _caption(key)
        alt = caption.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
        parts.append(f"### {caption}\n\n![{alt}]({data_uri(figures[key])})")
    return parts


# -- tables -------------------------------------------------------------------------------------
def epoch_table_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch rows in `EPOCH_COLUMNS` order, sorted by epoch, with the running mean accuracy.

    The running mean is the reference program's "total accuracy" (the mean over the epochs so
    far; with an evaluation schedule, over the scored epochs so far); it is computed from
    unrounded accuracies, then every number is rounded for display: scores 4 decimals, MSE 6,
    seconds 3. An epoch that was not scored keeps None in every score column.
    """
    rows: list[dict[str, Any]] = []
    accuracies: list[float] = []
    for record in sorted(history, key=lambda item: int(item.get("epoch", 0))):
        missing = [key for key in _HISTORY_KEYS if key not in record]
        if missing:
            raise ValueError(f"epoch record is missing {', '.join(missing)}: {record!r}")
        scored = record["accuracy"] is not None
        if scored:
            accuracies.append(float(record["accuracy"]))
        values = (
            int(record["epoch"]),
            _rounded(record["accuracy"], 4),
            _rounded(record["confident"], 4),
            round(math.fsum(accuracies) / len(accuracies), 4) if scored else None,
            _rounded(record["mse"], 6),
            round(float(record["train_seconds"]), 3),
            _rounded(record["eval_seconds"], 3),
        )
        rows.append(dict(zip(EPOCH_COLUMNS, values, strict=True)))
    return rows


def _rounded(value: float | None, digits: int) -> float | None:
    """`value` rounded for display; None (not scored) stays None."""
    return None if value is None else round(float(value), digits)


def _epoch_table(rows: list[dict[str, Any]]) -> str:
    """Markdown form of `epoch_table_rows`, fixed decimals so the columns line up; an epoch that
    was not scored shows `not scored` in its score columns."""
    cells = (
        [
            "not scored" if row[column] is None else fmt.format(row[column])
            for fmt, column in zip(_EPOCH_FORMATS, EPOCH_COLUMNS, strict=True)
        ]
        for row in rows
    )
    return _table(_EPOCH_HEADERS, cells, [True] * len(EPOCH_COLUMNS))


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested configuration as dotted keys (`network.hidden_nodes`), one table row each."""
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items.extend(_flatten(value, f"{name}."))
        else:
            items.append((name, value))
    return items


def _config_table(config: Mapping[str, Any]) -> str:
    """Setting / value table of the run configuration."""
    rows = ([escape_cell(key), escape_cell(value)] for key, value in _flatten(config))
    return _table(("setting", "value"), rows, (False, False))


def _lineage_table(lineage: list[dict[str, Any]]) -> str:
    """Where the data came from: file, content hash and how many rows validation kept."""
    ordered = sorted(lineage, key=lambda item: _ROLE_ORDER.get(str(item.get("role")), 2))
    rows = []
    for entry in ordered:
        missing = [key for key in _LINEAGE_KEYS if key not in entry]
        if missing:
            raise ValueError(f"lineage entry is missing {', '.join(missing)}: {entry!r}")
        sha = str(entry["sha256"])
        shown = _code(sha[:16]) + ("…" if len(sha) > 16 else "")
        counts = (f"{int(entry[key]):,}" for key in _LINEAGE_KEYS[3:])
        rows.append([escape_cell(entry["role"]), escape_cell(entry["source_name"]), shown, *counts])
    headers = ("role", "file", "sha256", "rows read", "accepted", "rejected")
    return _table(headers, rows, (False, False, False, True, True, True))


def _class_table(
    precision: Sequence[float] | FloatArray, recall: Sequence[float] | FloatArray
) -> str:
    """Per-digit precision and recall, one row per class."""
    if len(precision) != len(recall):
        raise ValueError(f"precision has {len(precision)} classes but recall {len(recall)}")
    rows = (
        [str(digit), f"{float(p):.4f}", f"{float(r):.4f}"]
        for digit, (p, r) in enumerate(zip(precision, recall, strict=True))
    )
    return _table(("digit", "precision", "recall"), rows, (True, True, True))


# -- the report ---------------------------------------------------------------------------------
def _headline(rows: list[dict[str, Any]], comparison: str | None) -> str:
    """Final scores first, since that is what a reader of a run report looks for."""
    if rows:
        final = rows[-1]
        epochs = len(rows)
        scored = sum(row["accuracy"] is not None for row in rows)
        scores = (
            f"**Test accuracy {_percent(final['accuracy'])}** · "
            f"confident score {_percent(final['confident'])} (output > 0.85 at the true label) · "
            f"{epochs} epoch{'s' if epochs != 1 else ''}"
            + (f", {scored} of them scored on the test set" if scored < epochs else "")
        )
    else:
        scores = "**No epochs were recorded.**"
    against = comparison if comparison is not None else "first model, no champion to compare with"
    return f"{scores}\n\n**Against the champion:** {against}"


def _results_caption(rows: list[dict[str, Any]]) -> str:
    """What the per-epoch table shows, and which epochs it leaves unscored (if any)."""
    caption = "Scores on the test set; running mean accuracy is the reference's “total accuracy”."
    if all(row["accuracy"] is not None for row in rows):
        return caption
    return (
        f"{caption[:-1]} (over the scored epochs). Epochs marked *not scored* were trained but "
        "not evaluated (the run's `evaluate_every` schedule); no value is shown for them."
    )


_PARAMETERS_CAPTION = (
    "Every parameter of the run as it was given; an empty network value took the preset's "
    "(or the reference's) value shown above."
)


def markdown_report(
    *,
    title: str,
    config: dict[str, Any],
    history: Sequence[EpochRecord],
    lineage: Sequence[DataLineage],
    precision: Sequence[float] | FloatArray,
    recall: Sequence[float] | FloatArray,
    figures: dict[str, bytes],
    comparison: str | None,
    run_dir: str,
    settings: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    new_data_headline: str | None = None,
    new_data: Sequence[str] = (),
) -> str:
    """The whole run report: headline, configuration, data lineage, tables, figures, footer.

    `comparison` is a ready sentence comparing with the champion model, None for a first model.
    `settings` says how the configuration was resolved (preset, explicit values);
    `parameters` are the run's declared parameters as given (None: the preset's or default).
    The final scores are those of the last epoch in `history`. `new_data_headline` and the
    `new_data` section (markdown parts) describe what the inbox added, when it added anything.
    """
    rows = epoch_table_rows([record.to_dict() for record in history])
    head = _headline(rows, comparison)
    if new_data_headline:
        head += f"\n\n{new_data_headline}"
    parts = [
        f"# {' '.join(title.splitlines())}",
        head,
        "## Configuration",
        *([f"Resolved from {settings}."] if settings else []),
        _config_table(config),
        *(
            ["## Run parameters", _PARAMETERS_CAPTION, _config_table(parameters)]
            if parameters
            else []
        ),
        "## Data lineage",
        _lineage_table([entry.to_dict() for entry in lineage]),
        *new_data,
        "## Per-epoch results",
        _results_caption(rows),
        _epoch_table(rows),
        "## Per-class precision and recall",
        _class_table(precision, recall),
    ]
    if figures:
        parts.extend(_figures_section(figures))
    parts.append(f"---\n\nRun folder: {_code(run_dir)}")
    return "\n\n".join(parts) + "\n"
