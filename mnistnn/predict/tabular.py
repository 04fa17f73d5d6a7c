"""Pixel CSV and Parquet inputs of the scoring inbox, read in bounded chunks.

Reading never holds a whole input: CSV text is parsed in blocks of about `BLOCK_BYTES` by
pyarrow; a block that pyarrow refuses (a wrong column count, a non-integer) is parsed again line
by line, so that every bad row gets its own reason while the others are kept. A pixel outside
0..255 fails its row only. A labelled file (785 columns) is refused as a whole: it belongs in
the labelled inbox. Rows are numbered from 1 among the data rows (no header, no blank lines), as
`mnistnn predict --csv` (which reads through `csv_chunks` too) numbers its ImageId.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mnistnn.config import INPUT_NODES
from mnistnn.data import text
from mnistnn.errors import DataError, one_line
from mnistnn.inert import shown
from mnistnn.limits import Budget
from mnistnn.predict.inputs import Chunk, InboxInput, InputRefused, RowFailure
from mnistnn.types import IntArray, PixelArray

#: Bytes of CSV text parsed at once (~4,500 MNIST rows): bounds the memory of a block's arrays.
BLOCK_BYTES: Final = 8 << 20
#: Rows of a Parquet input read at once.
BLOCK_ROWS: Final = 8192

_BOM: Final = b"\xef\xbb\xbf"
_INTEGER: Final = re.compile(rb"\s*[+-]?\d+\s*")
_NAMES: Final = [f"pixel{i}" for i in range(INPUT_NODES)]
_LABELLED: Final = (
    "785 columns: this looks like a labelled file (label + 784 pixels); scoring takes pixels "
    "only: drop the label column, or put the file in the labelled inbox (data/incoming/)"
)


# -- CSV -------------------------------------------------------------------------------------
def csv_chunks(item: InboxInput, block_bytes: int) -> Iterator[Chunk]:
    """A CSV input's rows, `block_bytes` of text at a time (`readers.read_chunks`'s CSV case).

    Read through `text.line_blocks` within the limits of `mnistnn.limits` (decoded bytes, rows,
    line length, time): a gzip file is inflated a chunk at a time, a newline-free input is
    refused at the line limit, binary or UTF-16 text is one file-level refusal.
    """
    name = shown(item.name)
    budget = Budget(name)
    try:
        with text.open_regular(item.path, name) as raw:
            total = max(1, os.fstat(raw.fileno()).st_size)
            row = 0
            first = True
            size = min(text.READ_SIZE, block_bytes)
            chunks = text.decoded_chunks(name, raw, budget, size=size)
            for _, block in text.line_blocks(name, chunks, budget, block_bytes):
                if first:
                    block = _without_header(name, block)
                    first = False
                _check_utf8(name, block, row)
                pixels, rows, failures, count = _parse_block(name, block, row + 1)
                row += count
                yield Chunk(pixels, rows, None, failures, min(1.0, raw.tell() / total))
    except InputRefused:
        raise
    except DataError as exc:
        raise InputRefused(one_line(exc)) from exc
    except (OSError, EOFError) as exc:
        raise InputRefused(f"{name}: cannot read ({one_line(exc)})") from exc
    if first or row == 0:
        raise InputRefused(f"{name}: no data rows")


def _check_utf8(name: str, block: bytes, row: int) -> None:
    """Text in another encoding is one file-level refusal, not a failure per row."""
    if block.isascii():
        return
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRefused(
            f"{name}: not UTF-8 text (byte 0x{block[exc.start]:02x} after data row {row}); "
            "save it as UTF-8 (or ASCII) CSV"
        ) from None


def _without_header(name: str, block: bytes) -> bytes:
    """The first block without its BOM and header line; refuses labelled files and bad headers."""
    if block.startswith(_BOM):
        block = block[len(_BOM) :]
    end = block.find(b"\n") + 1
    first = block[:end].strip()
    fields = first.split(b",")
    if first and not all(_INTEGER.fullmatch(value) for value in fields):
        if len(fields) == INPUT_NODES + 1:
            raise InputRefused(f"{name}, line 1: header has {_LABELLED}")
        if len(fields) != INPUT_NODES:
            raise InputRefused(
                f"{name}, line 1: header has {len(fields)} columns, expected {INPUT_NODES} "
                "(pixel0..pixel783)"
            )
        block = block[end:]
    start = 0
    while start < len(block):
        end = block.find(b"\n", start)
        end = len(block) if end < 0 else end
        line = block[start:end]
        if line.strip():
            if line.count(b",") == INPUT_NODES:
                raise InputRefused(f"{name}: the first row has {_LABELLED}")
            break
        start = end + 1
    return block


_READ_OPTIONS: Final = pacsv.ReadOptions(column_names=_NAMES, block_size=1 << 21)
_CONVERT_OPTIONS: Final = pacsv.ConvertOptions(
    column_types=dict.fromkeys(_NAMES, pa.uint8()),  # the parse is the 0..255 check
    null_values=[],
    quoted_strings_can_be_null=False,
    strings_can_be_null=False,
)


def _parse_block(
    name: str, block: bytes, first_row: int
) -> tuple[PixelArray, IntArray, list[RowFailure], int]:
    """(pixels, rows, failures, data rows) of one block of whole lines.

    pyarrow parses a clean block; a block it refuses, or in which it skipped blank lines (so
    the row numbers would shift), is parsed line by line instead.
    """
    lines = block.count(b"\n")
    try:
        values = _pyarrow_values(block)
    except pa.ArrowInvalid:
        return _parse_lines(name, block, first_row)
    if len(values) != lines:
        return _parse_lines(name, block, first_row)
    return values, np.arange(first_row, first_row + lines, dtype=np.int64), [], lines


def _pyarrow_values(text: bytes) -> PixelArray:
    """(n, 784) uint8 of clean CSV text; ArrowInvalid unless every line is 784 values 0..255."""
    table = pacsv.read_csv(
        pa.py_buffer(text), read_options=_READ_OPTIONS, convert_options=_CONVERT_OPTIONS
    )
    values = np.empty((table.num_rows, INPUT_NODES), dtype=np.uint8)
    for index, column in enumerate(table.columns):
        values[:, index] = column.to_numpy()
    return values


def _range_checked(
    name: str, values: IntArray, rows: IntArray
) -> tuple[PixelArray, IntArray, list[RowFailure]]:
    """Rows with every value in 0..255 as uint8; the others become failures naming a column."""
    outside = (values < 0) | (values > 255)
    bad = np.flatnonzero(outside.any(axis=1))
    if bad.size == 0:
        return values.astype(np.uint8), rows, []
    failures = []
    for index in bad:
        column = int(np.argmax(outside[index]))
        value = int(values[index, column])
        failures.append(
            RowFailure(name, int(rows[index]), f"column {column + 1} is {value}, outside 0..255")
        )
    keep = np.ones(len(values), dtype=bool)
    keep[bad] = False
    return values[keep].astype(np.uint8), rows[keep], failures


def _parse_lines(
    name: str, block: bytes, first_row: int
) -> tuple[PixelArray, IntArray, list[RowFailure], int]:
    """The careful path: number the non-blank lines, fail those with a wrong field count at
    once, and parse the rest with pyarrow again, halving any part it refuses until the bad
    lines stand alone (so a few bad rows cost a few small parses, not a Python loop)."""
    candidates: list[tuple[int, bytes]] = []
    failures: list[RowFailure] = []
    row = first_row - 1
    for line in block.split(b"\n"):
        text = line.strip()
        if not text:
            continue
        row += 1
        if text.count(b",") != INPUT_NODES - 1:
            failures.append(RowFailure(name, row, _line_values(text)[1] or "bad row"))
        else:
            candidates.append((row, text))
    parts: list[tuple[PixelArray, IntArray]] = []
    _bisect(name, candidates, parts, failures)
    if parts:
        pixels = np.concatenate([part[0] for part in parts])
        rows = np.concatenate([part[1] for part in parts])
    else:
        pixels = np.empty((0, INPUT_NODES), dtype=np.uint8)
        rows = np.empty(0, dtype=np.int64)
    failures.sort(key=lambda failure: failure.row or 0)
    return pixels, rows, failures, row - first_row + 1


def _bisect(
    name: str,
    lines: list[tuple[int, bytes]],
    parts: list[tuple[PixelArray, IntArray]],
    failures: list[RowFailure],
) -> None:
    if not lines:
        return
    try:
        values = _pyarrow_values(b"\n".join(text for _, text in lines) + b"\n")
    except pa.ArrowInvalid:
        values = None
    if values is not None and len(values) == len(lines):
        parts.append((values, np.array([row for row, _ in lines], dtype=np.int64)))
        return
    if len(lines) == 1:
        row, text = lines[0]
        failures.append(RowFailure(name, row, _line_values(text)[1] or "not a pixel row"))
        return
    middle = len(lines) // 2
    _bisect(name, lines[:middle], parts, failures)
    _bisect(name, lines[middle:], parts, failures)


def _line_values(text: bytes) -> tuple[list[int], str | None]:
    fields = text.split(b",")
    if len(fields) == INPUT_NODES + 1:
        return [], f"785 values; {_LABELLED.split(': ', 1)[1]}"
    if len(fields) != INPUT_NODES:
        return [], f"{len(fields)} values, expected {INPUT_NODES} pixel values"
    values = []
    for column, value in enumerate(fields, start=1):
        if not _INTEGER.fullmatch(value):
            shown = value.decode("utf-8", "replace")[:20]
            return [], f"column {column} is {shown!r}, not an integer"
        number = int(value)
        if not 0 <= number <= 255:
            return [], f"column {column} is {number}, outside 0..255"
        values.append(number)
    return values, None


# -- Parquet ---------------------------------------------------------------------------------
def parquet_chunks(item: InboxInput) -> Iterator[Chunk]:
    """A Parquet input's rows, BLOCK_ROWS at a time (`readers.read_chunks`'s Parquet case)."""
    try:
        parquet = pq.ParquetFile(item.path)
    except (pa.ArrowException, OSError) as exc:
        raise InputRefused(f"{item.name}: not a readable Parquet file ({one_line(exc)})") from exc
    schema = parquet.schema_arrow
    names = list(schema.names)
    if "label" in names or len(names) == INPUT_NODES + 1:
        raise InputRefused(f"{item.name}: {len(names)} columns, {_LABELLED.split(': ', 1)[1]}")
    if len(names) != INPUT_NODES:
        raise InputRefused(
            f"{item.name}: {len(names)} columns, expected {INPUT_NODES} pixel columns"
        )
    for column in schema:
        if not pa.types.is_integer(column.type):
            raise InputRefused(
                f"{item.name}: column {column.name!r} is {column.type}, expected integer pixels"
            )
    total = max(1, parquet.metadata.num_rows)
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=BLOCK_ROWS, columns=names):
            yield _parquet_chunk(item.name, batch, row, total)
            row += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise InputRefused(f"{item.name}: unreadable Parquet ({one_line(exc)})") from exc
    if row == 0:
        raise InputRefused(f"{item.name}: no data rows")


def _parquet_chunk(name: str, batch: pa.RecordBatch, row: int, total: int) -> Chunk:
    values = np.empty((batch.num_rows, INPUT_NODES), dtype=np.int64)
    missing = np.zeros(batch.num_rows, dtype=bool)
    for index, column in enumerate(batch.columns):
        if column.null_count:
            missing |= column.is_null().to_numpy(zero_copy_only=False)
            column = pc.fill_null(column, 0)
        values[:, index] = column.to_numpy(zero_copy_only=False)
    rows = np.arange(row + 1, row + 1 + batch.num_rows, dtype=np.int64)
    failures = [RowFailure(name, int(r), "missing pixel value") for r in rows[missing]]
    pixels, kept, range_failures = _range_checked(name, values[~missing], rows[~missing])
    failures = sorted(failures + range_failures, key=lambda failure: failure.row or 0)
    return Chunk(pixels, kept, None, failures, (row + batch.num_rows) / total)


__all__ = ["BLOCK_BYTES", "BLOCK_ROWS", "csv_chunks", "parquet_chunks"]
