"""Markdown report: headline numbers, tables, escaping and embedded figures."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from mnistnn.report import markdown as report
from mnistnn.runs.records import DataLineage, EpochRecord

PNG_A = b"\x89PNG\r\n\x1a\nfake-a" + bytes(range(256))
PNG_B = b"\x89PNG\r\n\x1a\nfake-b" + bytes(50)

HISTORY: list[dict[str, Any]] = [
    {"epoch": 1, "accuracy": 0.95123, "confident": 0.90011, "mse": 0.0081234567,
     "train_seconds": 30.12345, "eval_seconds": 0.51234},
    {"epoch": 2, "accuracy": 0.96345, "confident": 0.92222, "mse": 0.0071111111,
     "train_seconds": 29.98765, "eval_seconds": 0.49876},
    {"epoch": 3, "accuracy": 0.97017, "confident": 0.93456, "mse": 0.0065432101,
     "train_seconds": 30.5, "eval_seconds": 0.5},
]  # fmt: skip

LINEAGE: list[dict[str, Any]] = [
    {"role": "test", "source_name": "mnist_test.csv.gz", "sha256": "b" * 64,
     "rows_read": 10000, "rows_accepted": 10000, "rows_rejected": 0},
    {"role": "train", "source_name": "mnist|train.csv.gz", "sha256": "0123456789abcdef" + "a" * 48,
     "rows_read": 60002, "rows_accepted": 60000, "rows_rejected": 2},
]  # fmt: skip

PRECISION = [0.98, 0.99, 0.96, 0.95, 0.97, 0.96, 0.98, 0.97, 0.94, 0.95]
RECALL = [0.99, 0.98, 0.95, 0.96, 0.96, 0.95, 0.97, 0.96, 0.95, 0.94]


def build(**overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "title": "Run 3f2a",
        "config": {"network": {"hidden_nodes": 88, "learning_rate": 0.05}, "epochs": 3,
                   "note": "a|b"},
        "history": HISTORY,
        "lineage": LINEAGE,
        "precision": PRECISION,
        "recall": RECALL,
        "figures": {"confusion": PNG_B, "learning_curve": PNG_A},
        "comparison": "beats champion 96.80% by 0.22 points",
        "run_dir": "data/runs/3f2a",
    }  # fmt: skip
    arguments.update(overrides)
    # the report takes typed records: the dicts above are what metrics.json and lineage hold
    arguments["history"] = [EpochRecord(**row) for row in arguments["history"]]
    arguments["lineage"] = [DataLineage(**entry) for entry in arguments["lineage"]]
    return report.markdown_report(**arguments)


def table_after(markdown: str, heading: str) -> list[list[str]]:
    """Body rows of the table under `heading`, cells split on unescaped pipes."""
    section = markdown.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def test_data_uri_round_trips() -> None:
    uri = report.data_uri(PNG_A)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.removeprefix("data:image/png;base64,")) == PNG_A


def test_epoch_rows_running_mean_and_rounding() -> None:
    rows = report.epoch_table_rows(list(reversed(HISTORY)))  # order of records does not matter
    assert [list(row) for row in rows] == [list(report.EPOCH_COLUMNS)] * 3
    assert list(rows[0]) == [
        "epoch", "accuracy", "confident", "running_mean_accuracy", "mse",
        "train_seconds", "eval_seconds",
    ]  # fmt: skip
    for count, row in enumerate(rows, start=1):
        so_far = [record["accuracy"] for record in HISTORY[:count]]
        assert row["epoch"] == count
        assert row["running_mean_accuracy"] == pytest.approx(sum(so_far) / count, abs=5e-5)
        assert row["accuracy"] == round(HISTORY[count - 1]["accuracy"], 4)
    assert rows[0]["train_seconds"] == 30.123
    assert rows[1]["eval_seconds"] == 0.499
    assert rows[0]["mse"] == 0.008123
    assert rows[2]["running_mean_accuracy"] == 0.9616  # (0.95123 + 0.96345 + 0.97017) / 3


def test_epoch_rows_missing_key() -> None:
    with pytest.raises(ValueError, match="train_seconds"):
        report.epoch_table_rows([{"epoch": 1, "accuracy": 0.9, "confident": 0.8, "mse": 0.01,
                                  "eval_seconds": 0.1}])  # fmt: skip


def test_headline_and_comparison() -> None:
    markdown = build()
    assert markdown.startswith("# Run 3f2a\n")
    headline = markdown.split("## Configuration")[0]
    assert "97.02%" in headline  # final accuracy, 2 decimals
    assert "93.46%" in headline  # final confident score
    assert "beats champion 96.80% by 0.22 points" in headline
    assert "first model" not in markdown


def test_first_model_without_comparison() -> None:
    headline = build(comparison=None).split("## Configuration")[0]
    assert "first model" in headline


def test_empty_history() -> None:
    markdown = build(history=[])
    assert "No epochs were recorded" in markdown
    assert table_after(markdown, "## Per-epoch results") == []


def test_configuration_table_flattens_and_escapes() -> None:
    rows = table_after(build(), "## Configuration")
    assert ["network.hidden_nodes", "88"] in rows
    assert ["network.learning_rate", "0.05"] in rows
    assert ["note", "a\\|b"] in rows


def test_lineage_table() -> None:
    rows = table_after(build(), "## Data lineage")
    assert [row[0] for row in rows] == ["train", "test"]
    train = rows[0]
    assert train[1] == "mnist\\|train.csv.gz"
    assert train[2] == "`0123456789abcdef`…"
    assert train[3:] == ["60,002", "60,000", "2"]
    assert rows[1][3:] == ["10,000", "10,000", "0"]


def test_epoch_table_in_markdown() -> None:
    rows = table_after(build(), "## Per-epoch results")
    assert len(rows) == 3
    running = [sum(r["accuracy"] for r in HISTORY[:i]) / i for i in (1, 2, 3)]
    for row, record, mean in zip(rows, HISTORY, running, strict=True):
        assert row[0] == str(record["epoch"])
        assert row[1] == f"{record['accuracy']:.4f}"
        assert float(row[3]) == pytest.approx(mean, abs=5e-5)
        assert row[6] == f"{record['eval_seconds']:.3f}"


def test_precision_recall_table_has_one_row_per_digit() -> None:
    rows = table_after(build(), "## Per-class precision and recall")
    assert len(rows) == 10
    assert rows[8] == ["8", "0.9400", "0.9500"]


def test_precision_recall_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="classes"):
        build(recall=RECALL[:9])


def test_figures_embedded_in_order_and_decode() -> None:
    figures = {"extra_plot": PNG_B, "confusion": PNG_B, "learning_curve": PNG_A}
    markdown = build(figures=figures)
    images = re.findall(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert [base64.b64decode(data) for _, data in images] == [PNG_A, PNG_B, PNG_B]
    captions = [caption for caption, _ in images]
    assert captions == [
        report.FIGURE_CAPTIONS["learning_curve"],
        report.FIGURE_CAPTIONS["confusion"],
        "Extra plot",
    ]
    assert markdown.index("### Extra plot") > markdown.index("### Confusion matrix")


def test_no_figures_no_section() -> None:
    assert "## Figures" not in build(figures={})


def test_footer_has_run_dir() -> None:
    markdown = build(run_dir="data/runs/odd`name")
    assert markdown.rstrip().endswith("Run folder: ``data/runs/odd`name``")


def test_figure_filenames() -> None:
    names = report.figure_filenames()
    assert list(names) == list(report.FIGURE_ORDER)
    assert names["learning_curve"] == "learning-curve.png"
    assert len(set(names.values())) == len(names)
    assert all(name.endswith(".png") for name in names.values())
    custom = report.figure_filenames({"My plot!": b"", "my_plot": b"", "confusion": b""})
    assert custom == {
        "confusion": "confusion-matrix.png",
        "My plot!": "my-plot.png",
        "my_plot": "my-plot-2.png",
    }


def test_escape_cell() -> None:
    assert report.escape_cell("a|b\nc") == "a\\|b c"
    assert report.escape_cell("x\\|y") == "x\\\\\\|y"


def test_unscored_epochs_show_as_gaps_in_the_table_and_report() -> None:
    history = [
        {"epoch": 1, "accuracy": None, "confident": None, "mse": None,
         "train_seconds": 1.5, "eval_seconds": None},
        {"epoch": 2, "accuracy": 0.96, "confident": 0.86, "mse": 0.01,
         "train_seconds": 1.4, "eval_seconds": 0.2},
        {"epoch": 3, "accuracy": 0.98, "confident": 0.9, "mse": 0.008,
         "train_seconds": 1.4, "eval_seconds": 0.2},
    ]  # fmt: skip
    rows = report.epoch_table_rows(history)
    assert [row["accuracy"] for row in rows] == [None, 0.96, 0.98]
    assert [row["running_mean_accuracy"] for row in rows] == [None, 0.96, 0.97]
    assert rows[0]["train_seconds"] == 1.5 and rows[0]["eval_seconds"] is None
    markdown = build(history=history)
    table = table_after(markdown, "## Per-epoch results")
    assert table[0] == ["1", *["not scored"] * 4, "1.500", "not scored"]
    assert "3 epochs, 2 of them scored on the test set" in markdown
    assert "Test accuracy 98.00%" in markdown
