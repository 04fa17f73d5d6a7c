"""Shared helpers and fixtures of the data-layer tests: random MNIST rows and CSV writers."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from mnistnn.data.ingest import IngestSummary

KAGGLE_HEADER = ",".join(["label"] + [f"pixel{i}" for i in range(784)])


Rows = tuple[np.ndarray, np.ndarray]


def make_rows(n: int = 20, seed: int = 0) -> Rows:
    """Random pixels (with plenty of 1-, 2- and 3-digit values) and labels 0..9."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def csv_lines(pixels: np.ndarray, labels: np.ndarray) -> list[str]:
    pairs = zip(labels.tolist(), pixels.tolist(), strict=True)
    return [",".join(map(str, [label, *row])) for label, row in pairs]


def write(path: Path, text: str | bytes) -> Path:
    """Write text (UTF-8) or bytes; gzip-compress when the name ends in .gz."""
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def rejects_of(summary: IngestSummary) -> list[dict[str, str]]:
    assert summary.rejects is not None
    with open(summary.rejects, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assert_counts_add_up(summary: IngestSummary) -> None:
    assert summary.rows_read == summary.rows_accepted + summary.rows_rejected
    assert sum(summary.label_counts) == summary.rows_accepted


def set_field(line: str, column: int, value: str) -> str:
    fields = line.split(",")
    fields[column - 1] = value
    return ",".join(fields)


@pytest.fixture
def rows() -> Rows:
    return make_rows()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "processed"
