"""The review queue: doubtful digits waiting for a person's label, and importing what they labelled.

`data/review/<input-sha16>.csv`, one per scored input, with the header

    source,row,reason,predicted,confidence,challenger,label,pixel0,...,pixel783

`source`/`row` say where the digit came from (row empty for images), `reason` why it is here
(confidence below the threshold, or the challenger disagreeing), `predicted`/`confidence` the
champion's answer, `challenger` the challenger's digit (empty without one), `label` is empty:
fill it in with the true digit (0..9), leave it empty to skip a row. The pixels are the 784
values the network saw (an image's after MNIST-style preprocessing).

`import_reviewed` writes the labelled rows into the labelled inbox as
`incoming/reviewed-<sha16>.csv` (label then 784 pixels, no header: the MNIST CSV layout the
labelled ingest takes), named by the content's sha256, so importing the same labels twice writes
one batch. A review file in which somebody has filled in a label is never overwritten or removed
by a later scoring run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mnistnn.config import INPUT_NODES, N_CLASSES
from mnistnn.core import locations
from mnistnn.data import text
from mnistnn.errors import DataError, one_line
from mnistnn.inert import cell, shown
from mnistnn.limits import Budget
from mnistnn.types import IntArray, PixelArray

PIXELS: Final = [f"pixel{i}" for i in range(INPUT_NODES)]
SCHEMA: Final = pa.schema(
    [
        ("source", pa.string()),
        ("row", pa.int64()),
        ("reason", pa.string()),
        ("predicted", pa.int8()),
        ("confidence", pa.float64()),
        ("challenger", pa.int8()),
        ("label", pa.string()),
        *((name, pa.uint8()) for name in PIXELS),
    ]
)
#: Bad rows listed one by one in an import summary (all are counted).
SHOWN_PROBLEMS: Final = 10
_LABEL: Final = re.compile(r"[0-9]")
_PIXEL: Final = re.compile(r"[0-9]{1,3}")


# -- writing the queue (called by batch scoring) ---------------------------------------------
def queue_table(
    pixels: PixelArray, indices: IntArray, batch: pa.RecordBatch, threshold: float
) -> pa.Table:
    """The review rows for `indices` of a scored chunk (its pixels and its predictions batch)."""
    chosen = batch.take(pa.array(indices, pa.int64()))
    predicted = chosen.column("predicted").to_numpy()
    confidence = chosen.column("confidence").to_numpy().astype(np.float64)
    names = chosen.schema.names
    if "challenger_predicted" in names:
        other: pa.Array = chosen.column("challenger_predicted")
        other_digits = other.to_numpy(zero_copy_only=False)
        version = chosen.column("challenger_version")[0].as_py()
    else:
        other = pa.nulls(len(indices), pa.int8())
        other_digits, version = None, None
    reasons = []
    for index in range(len(indices)):
        parts = []
        if confidence[index] < threshold:
            parts.append(f"confidence {confidence[index]:.2f} < {threshold:g}")
        if other_digits is not None and other_digits[index] != predicted[index]:
            parts.append(f"challenger {version} says {other_digits[index]}")
        reasons.append("; ".join(parts))
    columns = np.ascontiguousarray(pixels[indices].T)
    sources = [cell(value) for value in chosen.column("source").to_pylist()]
    arrays = [
        pa.array(sources, pa.string()),  # the file people open in a spreadsheet: no formulas
        chosen.column("row"),
        pa.array(reasons, pa.string()),
        chosen.column("predicted"),
        pa.array(np.round(confidence, 4)),
        other,
        pa.nulls(len(indices), pa.string()),
        *(pa.array(column) for column in columns),
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def has_labels(path: str | Path) -> bool:
    """True when the review file exists and someone filled in a label (or it is unreadable)."""
    if not locations.exists(path):
        return False
    source = locations.local_copy(path)
    try:
        table = pacsv.read_csv(
            source,
            convert_options=pacsv.ConvertOptions(
                include_columns=["label"],
                column_types={"label": pa.string()},
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, OSError):
        return True  # not ours to judge: keep it
    labels = table.column("label").to_pylist()
    return any(value is not None and value.strip() for value in labels)


def discard_untouched(path: str | Path) -> bool:
    """Remove a review file nobody has started labelling (a newer scoring has no doubts)."""
    if locations.exists(path) and not has_labels(path):
        locations.delete(path)
        return True
    return False


# -- reading the queue (for the report) ------------------------------------------------------
@dataclass(frozen=True)
class Digits:
    """A few digits to show: (n, 784) pixels and one caption each."""

    pixels: PixelArray
    captions: tuple[str, ...]

    @classmethod
    def empty(cls) -> Digits:
        return cls(np.empty((0, INPUT_NODES), dtype=np.uint8), ())


def review_digits(path: str | Path, limit: int = 16) -> tuple[Digits, Digits]:
    """(the `limit` least confident digits, the first `limit` disagreements) of a review file."""
    if not locations.exists(path):
        return Digits.empty(), Digits.empty()
    source = locations.local_copy(path)
    table = pacsv.read_csv(
        source,
        convert_options=pacsv.ConvertOptions(
            column_types={name: SCHEMA.field(name).type for name in SCHEMA.names}
        ),
    )
    confidence = table.column("confidence").to_numpy()
    predicted = table.column("predicted").to_numpy()
    other = table.column("challenger").to_numpy(zero_copy_only=False)
    disagree = np.flatnonzero(~np.isnan(other.astype(np.float64)) & (other != predicted))
    least = np.argsort(confidence, kind="stable")[:limit]
    sources = table.column("source").to_pylist()
    rows = table.column("row").to_pylist()

    def pick(indices: IntArray, caption: str) -> Digits:
        taken = table.select(PIXELS).take(pa.array(indices, pa.int64()))
        pixels = np.column_stack([column.to_numpy() for column in taken.columns]).astype(np.uint8)
        captions = []
        for index in indices:
            where = sources[index] if rows[index] is None else f"{sources[index]}:{rows[index]}"
            captions.append(
                caption.format(
                    where=where,
                    p=int(predicted[index]),
                    c=confidence[index],
                    o="" if np.isnan(float(other[index])) else int(other[index]),
                )
            )
        return Digits(pixels.reshape(-1, INPUT_NODES), tuple(captions))

    return (
        pick(least, "{where}\n{p} ({c:.2f})"),
        pick(disagree[:limit], "{where}\nchampion {p} / challenger {o}"),
    )


# -- label import ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportSummary:
    """What `import_reviewed` did with one reviewed file."""

    source: str
    rows: int
    labelled: int
    unlabelled: int
    bad: int
    problems: tuple[str, ...] = field(default=())
    output: str | None = None
    already_imported: bool = False

    def describe(self) -> str:
        """Human lines for the CLI."""
        if self.output is None:
            head = (
                f"{self.source}: no row has a label filled in ({self.rows} rows); nothing written"
                if self.labelled == 0
                else f"{self.source}: nothing written"
            )
        elif self.already_imported:
            head = (
                f"{self.source}: these {self.labelled} labelled rows are already in {self.output}"
            )
        else:
            head = f"{self.source}: wrote {self.labelled} labelled rows to {self.output}"
        lines = [
            head,
            f"  {self.unlabelled} rows without a label skipped, {self.bad} bad rows skipped",
        ]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def import_reviewed(path: str | Path, incoming_dir: str | Path) -> ImportSummary:
    """Write the rows of a reviewed file whose `label` is filled in as a labelled batch.

    Rows with an empty label are skipped and counted; a label that is not one digit 0..9, or
    pixels that are not 784 integers in 0..255, are reported (file line and reason) and
    skipped. Writes nothing when no row is usable. DataError when it is not a review file.
    Either may be an `s3://` URL (the review file in a bucket, a remote labelled inbox).
    """
    if not (os.path.lexists(path) if not locations.is_url(path) else locations.exists(path)):
        raise DataError(f"{shown(path)}: no such file")  # a FIFO exists: open_regular refuses it
    name = shown(path)
    source = locations.local_copy(path)
    lines: list[str] = []
    problems: list[str] = []
    rows = unlabelled = bad = 0
    budget = Budget(name)
    try:
        with (
            text.open_regular(source, name) as raw,
            io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle,
        ):
            reader = csv.reader(_bounded_lines(handle, budget))
            header = next(reader, None)
            label_at, pixels_at = _columns(name, header)
            for number, record in enumerate(reader, start=2):
                if not any(value.strip() for value in record):
                    continue
                rows += 1
                label = record[label_at].strip() if label_at < len(record) else ""
                if not label:
                    unlabelled += 1
                    continue
                problem = _problem(label, record, pixels_at)
                if problem is not None:
                    bad += 1
                    if len(problems) < SHOWN_PROBLEMS:
                        problems.append(f"line {number}: {problem}")
                    continue
                pixels = ",".join(record[pixels_at + i].strip() for i in range(INPUT_NODES))
                lines.append(f"{int(label)},{pixels}")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{name}: unreadable review file ({shown(one_line(exc))})") from exc
    summary = ImportSummary(name, rows, len(lines), unlabelled, bad, tuple(problems))
    if not lines:
        return summary
    data = ("\n".join(lines) + "\n").encode("ascii")
    target = locations.join(incoming_dir, f"reviewed-{hashlib.sha256(data).hexdigest()[:16]}.csv")
    already = _already_there(target, data)
    if not already:
        locations.write_bytes(target, data)  # a rename: replaces a link there, never follows it
    return ImportSummary(
        name, rows, len(lines), unlabelled, bad, tuple(problems), str(target), already
    )


def _bounded_lines(handle: io.TextIOWrapper, budget: Budget) -> Iterator[str]:
    """The file's lines, each checked against the line limit as it is read (a newline-free
    file costs one line's worth of memory), all against the row and time limits."""
    number = 0
    while True:
        line = handle.readline(budget.max_line + 1)
        if not line:
            return
        number += 1
        if len(line) > budget.max_line:
            budget.check_line(len(line), number)
        budget.add_rows(1)
        budget.add_bytes(len(line))
        yield line


def _already_there(target: locations.Location, data: bytes) -> bool:
    """True only when these very bytes are already written there as a regular file (not a
    link, dangling or not, and not another content under the name)."""
    if not locations.is_url(target):
        path = Path(target)
        if not path.exists() or path.is_symlink() or not path.is_file():
            return False
        return path.stat().st_size == len(data) and path.read_bytes() == data
    return locations.exists(target) and locations.read_bytes(target) == data


def _columns(source: str, header: list[str] | None) -> tuple[int, int]:
    """Positions of `label` and `pixel0` (pixel0..pixel783 must follow in order)."""
    names = [name.strip() for name in header or []]
    repeated = sorted({name for name in names if names.count(name) > 1 and name})
    if repeated:
        raise DataError(
            f"{source}: column {', '.join(repeated)} appears more than once in the header; "
            "keep one (which to trust is not for mnistnn to guess)"
        )
    if "label" not in names or "pixel0" not in names:
        raise DataError(
            f"{source}: not a review file (its header needs a label column and "
            "pixel0..pixel783, as `mnistnn score` writes them in data/review/)"
        )
    start = names.index("pixel0")
    if names[start : start + INPUT_NODES] != PIXELS:
        raise DataError(f"{source}: header must have pixel0..pixel783 in order")
    return names.index("label"), start


def _problem(label: str, record: list[str], start: int) -> str | None:
    if not _LABEL.fullmatch(label) or not 0 <= int(label) < N_CLASSES:
        return f"label {label!r} is not a digit 0..9"
    if len(record) < start + INPUT_NODES:
        return f"{len(record) - start} pixel values, expected {INPUT_NODES}"
    for column in range(INPUT_NODES):
        value = record[start + column].strip()
        if not _PIXEL.fullmatch(value) or int(value) > 255:
            return f"pixel{column} is {value!r}, not an integer in 0..255"
    return None


__all__ = [
    "PIXELS",
    "SCHEMA",
    "Digits",
    "ImportSummary",
    "discard_untouched",
    "has_labels",
    "import_reviewed",
    "queue_table",
    "review_digits",
]
