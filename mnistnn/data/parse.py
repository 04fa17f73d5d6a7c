"""CSV text to arrays: the accepted rows as uint8 labels and pixels, the rejected ones with reasons.

The text is read in blocks of whole lines (`text.line_blocks`, within the limits of
`mnistnn.limits`), each parsed on its own, so the memory is the parsed rows plus one block. Two
paths per block. The fast path hands the whole text to pyarrow's multithreaded CSV parser with uint8
columns: on a clean file that parse *is* the validation (785 integer fields per line, each in
0..255), leaving only the label range to check with numpy. When pyarrow refuses the text, the slow
path classifies every line with vectorised Arrow kernels (count the commas, one regular expression
for anything doubtful), parses the certainly valid lines with pyarrow again, and sends only the
doubtful lines through Python, one by one, for a precise reason."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mnistnn.config import INPUT_NODES
from mnistnn.data import rules, text
from mnistnn.errors import DataError
from mnistnn.limits import Budget
from mnistnn.types import LabelArray, PixelArray

logger = logging.getLogger(__name__)

COLUMN_NAMES = [f"c{i}" for i in range(rules.N_FIELDS)]

IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Parsed:
    """The accepted rows, in file order, and the rejected ones as (1-based line, reason)."""

    labels: LabelArray
    pixels: PixelArray
    reject_lines: list[int]
    reject_reasons: list[str]
    header: str | None

    @property
    def rows_read(self) -> int:
        return len(self.labels) + len(self.reject_lines)


def read_and_parse(source: Path, handle: BinaryIO, budget: Budget, digest: Any = None) -> Parsed:
    """Parse an open CSV (plain or gzip) block by block, within the budget's limits.

    The text is never held whole: each block of whole lines (`text.line_blocks`) is checked
    (encoding, binary data) and parsed, then dropped; only the parsed rows and the rejected
    line numbers and reasons are kept. `digest` (a hashlib object) sees the raw bytes.
    """
    blocks = text.line_blocks(source, text.decoded_chunks(source, handle, budget, digest), budget)
    rows = _Rows(budget.max_rows)
    held: tuple[int, bytes] | None = None
    for item in blocks:
        if held is not None:
            line, block = held
            kept, rest = _split_trailing_blanks(block)
            if kept:
                rows.add(parse_block(source, kept, line, first=rows.empty))
            held = (line + kept.count(b"\n"), rest + item[1]) if rest else item
        else:
            held = item
        budget.check_time()
    if held is not None:
        rows.add(parse_block(source, held[1], held[0], first=rows.empty))
    parsed = rows.parsed()
    if parsed.rows_read == 0 and parsed.header is None:
        raise DataError(f"{source}: empty file (no data rows)")
    return parsed


def _split_trailing_blanks(block: bytes) -> tuple[bytes, bytes]:
    """(whole lines up to the last non-blank one, the blank lines after it): blank lines at a
    block's end go with the next block, so that only the file's last ones are dropped."""
    stripped = len(block.rstrip(b" \t\r\n"))
    if stripped == 0:
        return b"", block
    cut = block.find(b"\n", stripped) + 1 or len(block)
    return block[:cut], block[cut:]


def parse_block(source: Path, data: bytes, first_line: int, *, first: bool) -> Parsed:
    """One block of whole lines starting at `first_line`: fast path when pyarrow accepts it,
    else the line-locating slow path. The first block may start with a BOM and a header."""
    if first:
        data = text.strip_bom(data)
    text.check_text(source, data, first_line)
    if first:
        start, end, line, header = text.body_bounds(source, data)
    else:
        start, end, line, header = 0, len(data.rstrip(b" \t\r\n")), first_line, None
    if start >= end:
        return Parsed(_no_labels(), _no_pixels(), [], [], header)
    fast = _parse_fast(data, start, end)
    if fast is not None:
        return _drop_bad_labels(*fast, line, header)
    logger.info("%s: not a clean CSV, locating the bad lines", source)
    return _parse_slow(source, memoryview(data)[start:end], line, header, first)


class _Rows:
    """The accepted rows so far, copied into one array reserved for up to `max_rows` rows (at
    most 2**21, then doubled): untouched pages cost nothing, so the peak is the rows, not twice."""

    def __init__(self, max_rows: int) -> None:
        self.capacity = max(1, min(max_rows, 1 << 21))
        self.count = 0
        self.labels = _no_labels()
        self.pixels = _no_pixels()
        self.lines: list[int] = []
        self.reasons: list[str] = []
        self.header: str | None = None
        self.empty = True

    def add(self, part: Parsed) -> None:
        if self.empty:
            self.header = part.header
            self.empty = False
            self.labels = np.empty(self.capacity, dtype=np.uint8)
            self.pixels = np.empty((self.capacity, INPUT_NODES), dtype=np.uint8)
        stop = self.count + len(part.labels)
        while stop > len(self.labels):
            grown = np.empty((2 * len(self.labels), INPUT_NODES), dtype=np.uint8)
            grown[: self.count] = self.pixels[: self.count]
            self.pixels = grown
            self.labels = np.concatenate((self.labels, np.empty_like(self.labels)))
        self.labels[self.count : stop] = part.labels
        self.pixels[self.count : stop] = part.pixels
        self.count = stop
        self.lines.extend(part.reject_lines)
        self.reasons.extend(part.reject_reasons)

    def parsed(self) -> Parsed:
        return Parsed(
            self.labels[: self.count],
            self.pixels[: self.count],
            self.lines,
            self.reasons,
            self.header,
        )


def _no_labels() -> LabelArray:
    return np.empty(0, dtype=np.uint8)


def _no_pixels() -> PixelArray:
    return np.empty((0, INPUT_NODES), dtype=np.uint8)


def _parse_fast(data: bytes, start: int, end: int) -> tuple[LabelArray, PixelArray] | None:
    """Parse as 785 uint8 columns, or None when the slow path must decide.

    Line numbers follow pyarrow's rows only if every CR is part of a CRLF, and pyarrow would
    accept hexadecimal `0x..` integers, so such texts skip straight to the slow path.
    """
    if not _fast_path_safe(data, start, end):
        return None
    try:
        table = read_csv_table(memoryview(data)[start:end], pa.uint8())
    except pa.ArrowInvalid:
        return None
    return _table_columns(table)


def _fast_path_safe(data: bytes, start: int, end: int) -> bool:
    """False when pyarrow's rows might not be our lines (lone CR) or it would accept `0x1f`."""
    carriage_returns = data.count(b"\r", start, end)
    if carriage_returns and carriage_returns != data.count(b"\r\n", start, end):
        return False
    return data.find(b"x", start, end) < 0 and data.find(b"X", start, end) < 0


def read_csv_table(data: Any, value_type: pa.DataType, skip_header: bool = False) -> pa.Table:
    """pyarrow CSV: no quoting, no nulls, blank lines kept (they are errors), typed columns."""
    return pacsv.read_csv(
        data if isinstance(data, io.IOBase | pa.Buffer) else pa.py_buffer(data),
        read_options=pacsv.ReadOptions(
            column_names=COLUMN_NAMES, block_size=text.CSV_BLOCK_SIZE, skip_rows=int(skip_header)
        ),
        parse_options=pacsv.ParseOptions(quote_char=False, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(COLUMN_NAMES, value_type),
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _table_columns(table: pa.Table) -> tuple[LabelArray, PixelArray]:
    """(labels (n,), pixels (n, 784)) row-major from 785 uint8 columns, one batch at a time.

    Transposing batch by batch keeps the written rows in cache: 5x faster than whole columns.
    """
    labels = np.empty(table.num_rows, dtype=np.uint8)
    pixels = np.empty((table.num_rows, INPUT_NODES), dtype=np.uint8)
    row = 0
    for batch in table.to_batches():
        stop = row + batch.num_rows
        labels[row:stop] = batch.column(0).to_numpy()
        block = pixels[row:stop]
        for index in range(1, rules.N_FIELDS):
            block[:, index - 1] = batch.column(index).to_numpy()
        row = stop
    return labels, pixels


def _drop_bad_labels(
    labels: LabelArray, pixels: PixelArray, first_line: int, header: str | None
) -> Parsed:
    """Fast path: uint8 parsing proved the pixels; only labels above 9 remain to refuse."""
    bad = labels > rules.MAX_LABEL
    if not bad.any():
        return Parsed(labels, pixels, [], [], header)
    lines = (np.flatnonzero(bad) + first_line).tolist()
    reasons = [rules.label_reason(value) for value in labels[bad].tolist()]
    keep = ~bad
    return Parsed(labels[keep], np.ascontiguousarray(pixels[keep]), lines, reasons, header)


def _parse_slow(
    source: Path, body: memoryview, first_line: int, header: str | None, first: bool
) -> Parsed:
    """Classify every line with vectorised pyarrow kernels, parse the clean ones, explain the rest.

    Each kernel (count commas, one RE2 regex) streams once over the bytes, line by line, without
    the large temporaries that a numpy byte-level scan would need.
    """
    lines = _lines_array(body)
    fields = pc.count_substring(lines, ",").to_numpy() + 1
    wrong_count = fields != rules.N_FIELDS
    if first and wrong_count.all():  # the first block: the file's columns are wrong
        raise rules.field_count_error(source, fields)
    suspicious = _matches(lines, rules.SUSPICIOUS_LINE) & ~wrong_count
    clean = ~(wrong_count | suspicious)
    parsed = _parse_clean_lines(lines, clean)
    if parsed is None:  # pyarrow disagrees with the classification: Python decides every line
        logger.warning(
            "%s: pyarrow refused lines classified as valid; checking all in Python", source
        )
        suspicious, clean = ~wrong_count, np.zeros_like(clean)
        parsed = _parse_clean_lines(lines, clean)
    assert parsed is not None
    labels, pixels = parsed
    explained = _explain_lines(lines, np.flatnonzero(suspicious))
    counted = np.flatnonzero(wrong_count)
    blank = _matches(lines.take(pa.array(counted)), rules.BLANK_LINE).tolist()
    reasons = [
        rules.EMPTY_LINE if is_blank else rules.field_count_reason(n_fields)
        for is_blank, n_fields in zip(blank, fields[counted].tolist(), strict=True)
    ]
    return _merge(
        (np.flatnonzero(clean), labels, pixels), explained, (counted, reasons), first_line, header
    )


def _lines_array(body: memoryview) -> pa.LargeBinaryArray:
    """The lines of `body` as one Arrow binary array (each with its line ending), zero-copy."""
    buf = np.frombuffer(body, dtype=np.uint8)
    newlines = np.flatnonzero(buf == ord("\n"))
    offsets = np.concatenate(([0], newlines + 1, [len(buf)]))
    if len(buf) and buf[-1] == ord("\n"):
        offsets = offsets[:-1]
    buffers = [None, pa.py_buffer(offsets.astype(np.int64)), pa.py_buffer(body)]
    return pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1, buffers)


def _matches(lines: pa.Array, pattern: str) -> npt.NDArray[np.bool_]:
    found: npt.NDArray[np.bool_] = pc.match_substring_regex(lines, pattern).to_numpy(
        zero_copy_only=False
    )
    return found


def _parse_clean_lines(
    lines: pa.LargeBinaryArray, clean: npt.NDArray[np.bool_]
) -> tuple[LabelArray, PixelArray] | None:
    """pyarrow's CSV parser on the certainly valid lines only, gathered into one buffer."""
    if not clean.any():
        return np.empty(0, dtype=np.uint8), np.empty((0, INPUT_NODES), dtype=np.uint8)
    kept = lines.filter(pa.array(clean))
    offsets = np.frombuffer(kept.buffers()[1], dtype=np.int64)
    first, last = int(offsets[kept.offset]), int(offsets[kept.offset + len(kept)])
    data = kept.buffers()[2].slice(first, last - first)
    try:
        return _table_columns(read_csv_table(data, pa.uint8()))
    except pa.ArrowInvalid:
        return None


def _explain_lines(
    lines: pa.LargeBinaryArray, rows: IndexArray
) -> tuple[list[int], list[str], list[list[int]], list[int]]:
    """Python, one line at a time, for the few lines that need it: reasons or parsed values."""
    bad_rows: list[int] = []
    reasons: list[str] = []
    good_values: list[list[int]] = []
    good_rows: list[int] = []
    texts = lines.take(pa.array(rows, type=pa.int64())).to_pylist()
    for row, raw in zip(rows.tolist(), texts, strict=True):
        line = raw.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8", errors="replace")
        reason, values = rules.check_line(line)
        if reason is None:
            good_rows.append(row)
            good_values.append(values)
        else:
            bad_rows.append(row)
            reasons.append(reason)
    return bad_rows, reasons, good_values, good_rows


def _merge(
    clean: tuple[IndexArray, LabelArray, PixelArray],
    explained: tuple[list[int], list[str], list[list[int]], list[int]],
    counted: tuple[IndexArray, list[str]],
    first_line: int,
    header: str | None,
) -> Parsed:
    """Put accepted and rejected rows back in file order and turn row indices into lines."""
    clean_rows, labels, pixels = clean
    bad_rows, bad_reasons, good_values, good_rows = explained
    if good_rows:
        extra = np.array(good_values, dtype=np.uint8)
        rows = np.concatenate((clean_rows, np.array(good_rows, dtype=np.int64)))
        order = np.argsort(rows, kind="stable")
        labels = np.concatenate((labels, extra[:, 0]))[order]
        pixels = np.concatenate((pixels, extra[:, 1:]))[order]
    reject_rows = np.concatenate((np.array(bad_rows, dtype=np.int64), counted[0]))
    reasons = bad_reasons + counted[1]
    order = np.argsort(reject_rows, kind="stable")
    return Parsed(
        np.ascontiguousarray(labels),
        np.ascontiguousarray(pixels),
        (reject_rows[order] + first_line).tolist(),
        [reasons[index] for index in order.tolist()],
        header,
    )
