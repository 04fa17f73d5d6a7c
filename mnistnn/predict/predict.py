"""Predict digits for image files, folders of images, or an unlabelled pixel CSV.

These are the library functions behind the `predict` command: no argument parsing, no Prefect.
Images go through `mnistnn.predict.image` first, because the network only knows MNIST's form; one
unreadable image never stops a batch, it becomes a `PredictFailure` with a one-line message.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mnistnn.config import INPUT_NODES
from mnistnn.core.files import write_bytes_atomic
from mnistnn.data import text
from mnistnn.data.text import is_gzip_file
from mnistnn.errors import DataError, one_line
from mnistnn.inert import shown
from mnistnn.limits import Budget
from mnistnn.model.network import NeuralNetwork
from mnistnn.predict.image import IMAGE_SUFFIXES, preprocess_image
from mnistnn.types import FloatArray, IntArray, PixelArray

#: Rows scored per batched product: bounds the float copy of the inputs (~25 MB at float64).
QUERY_CHUNK: Final = 4096
_INTEGER: Final = re.compile(r"\s*[+-]?\d+\s*")  # lenient: only tells a header from data
_PIXEL: Final = re.compile(r"-?\d+")  # strict: what a row's field must look like
_LABELLED_HINT: Final = (
    "this looks like a labelled file (label + 784 pixels); predict expects pixels only, "
    "so drop the label column"
)


@dataclass(frozen=True)
class Prediction:
    """The network's answer for one image.

    `confidence` is the output at `digit` divided by the sum of the ten outputs. The outputs
    are independent sigmoids, not a softmax, so they do not sum to 1 and the raw output alone
    overstates certainty when several digits score high; the share is a rough, comparable
    score in 0..1, not a calibrated probability. `top3` holds the three best (digit, share).
    """

    path: str
    digit: int
    confidence: float
    top3: list[tuple[int, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (top3 as a list of {"digit", "confidence"} objects)."""
        return {
            "path": self.path,
            "digit": self.digit,
            "confidence": self.confidence,
            "top3": [{"digit": digit, "confidence": share} for digit, share in self.top3],
        }


@dataclass(frozen=True)
class PredictFailure:
    """An input that could not be scored; `error` is one line that names the file."""

    path: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error}


# -- scoring ---------------------------------------------------------------------------------
def predict_pixels(network: NeuralNetwork, pixels: PixelArray) -> tuple[IntArray, FloatArray]:
    """(n, 784) or (784,) uint8 pixels -> (digits (n,), outputs (n, 10)), scored in chunks.

    Chunking keeps memory flat for large CSVs: the network scales every row to floats first.
    """
    rows = np.asarray(pixels)
    if rows.ndim == 1:
        rows = rows[np.newaxis, :]
    parts = [
        network.query(rows[start : start + QUERY_CHUNK])
        for start in range(0, max(len(rows), 1), QUERY_CHUNK)
    ]
    outputs = np.concatenate(parts, axis=0)
    return np.argmax(outputs, axis=1), outputs


def output_shares(outputs: FloatArray) -> FloatArray:
    """Each output divided by the sum of its row's outputs: `Prediction.confidence`'s definition.

    (10,) or (n, 10) -> the same shape; the share at the winning digit is the confidence.
    """
    shares: FloatArray = outputs / outputs.sum(axis=-1, keepdims=True)
    return shares


def _prediction(path: str, outputs: FloatArray) -> Prediction:
    shares = output_shares(outputs)
    ranked = np.argsort(-shares, kind="stable")[:3]
    top3 = [(int(digit), float(shares[digit])) for digit in ranked]
    return Prediction(path=path, digit=top3[0][0], confidence=top3[0][1], top3=top3)


# -- image files -----------------------------------------------------------------------------
def predict_paths(
    network: NeuralNetwork, paths: Sequence[str | os.PathLike[str]]
) -> tuple[list[Prediction], list[PredictFailure]]:
    """Predict each image file; a folder stands for its image files (sorted, not recursive).

    Files in a folder are chosen by suffix (`IMAGE_SUFFIXES`, any case); a file named
    explicitly is tried whatever its suffix. Every image that cannot be read or has no ink
    becomes a `PredictFailure`, in input order, and the others are scored in one batch.
    """
    kept: list[str] = []
    rows: list[PixelArray] = []
    failures: list[PredictFailure] = []
    for item in _expand(paths, failures):
        try:
            rows.append(preprocess_image(item))
        except Exception as exc:  # no poison pill: any error fails this image only
            failures.append(PredictFailure(str(item), _failure_line(item, exc)))
        else:
            kept.append(str(item))
    if not rows:
        return [], failures
    _, outputs = predict_pixels(network, np.stack(rows))
    return [_prediction(path, out) for path, out in zip(kept, outputs, strict=True)], failures


def _failure_line(item: str | os.PathLike[str], exc: Exception) -> str:
    """One line naming the image (escaped) and what went wrong, whatever the exception."""
    if isinstance(exc, DataError):
        return one_line(exc)
    if isinstance(exc, MemoryError):
        return f"{shown(item)}: out of memory while decoding (see the limits in mnistnn.limits)"
    return f"{shown(item)}: unreadable image ({type(exc).__name__}: {shown(one_line(exc))})"


def _expand(
    paths: Sequence[str | os.PathLike[str]], failures: list[PredictFailure]
) -> Iterator[str | os.PathLike[str]]:
    """Yield image paths, replacing each folder by its images; unreadable folders are failures."""
    for item in paths:
        folder = Path(item)
        if not folder.is_dir():
            yield item
            continue
        try:
            images = sorted(
                entry
                for entry in folder.iterdir()
                if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file()
            )
        except OSError as exc:
            failures.append(PredictFailure(str(item), f"{item}: cannot list folder ({exc})"))
            continue
        if not images:
            wanted = " ".join(sorted(IMAGE_SUFFIXES))
            failures.append(PredictFailure(str(item), f"{item}: no image files ({wanted})"))
        yield from images


# -- unlabelled CSV --------------------------------------------------------------------------
def predict_csv(
    network: NeuralNetwork,
    csv_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
) -> list[tuple[int, int]]:
    """Predict every row of an unlabelled pixel CSV -> [(image_id, digit)], ids from 1.

    With `out_path`, also writes the Kaggle submission layout (`ImageId,Label`) atomically.
    """
    digits, _ = predict_pixels(network, read_unlabelled_csv(csv_path))
    rows = [(index, int(digit)) for index, digit in enumerate(digits, start=1)]
    if out_path is not None:
        lines = ["ImageId,Label", *(f"{index},{digit}" for index, digit in rows)]
        write_bytes_atomic(out_path, ("\n".join(lines) + "\n").encode("ascii"))
    return rows


def read_unlabelled_csv(path: str | os.PathLike[str]) -> PixelArray:
    """Read rows of 784 pixel values (Kaggle test.csv: header `pixel0..pixel783` or none).

    Plain or gzip (recognised by content, not name). The fast path parses with pyarrow; when
    that or the range check fails, a slow line-by-line scan finds the first bad line, so the
    DataError names the file and line and says what is wrong with it.
    """
    source = Path(path)
    if not source.is_file():
        raise DataError(f"{shown(source)}: no such file")
    _check_limits(source)
    gzipped = is_gzip_file(source)
    has_header = _check_header(source, gzipped)
    try:
        values = _parse_fast(source, gzipped, has_header)
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise DataError(_first_bad_line(source, gzipped, has_header, exc)) from exc
    if values.size and (values.min() < 0 or values.max() > 255):
        raise DataError(_first_bad_line(source, gzipped, has_header, None))
    if len(values) == 0:
        raise DataError(f"{source}: no data rows")
    return values.astype(np.uint8)


def _check_limits(source: Path) -> None:
    """One streaming pass within the limits (`mnistnn.limits`) before pyarrow reads the file:
    a bomb, a newline-free or binary file is refused after its first chunk, not inflated."""
    budget = Budget(shown(source))
    with text.open_regular(source, shown(source)) as handle:
        chunks = text.decoded_chunks(shown(source), handle, budget)
        for _ in text.line_blocks(shown(source), chunks, budget):
            pass


def _open_text(source: Path, gzipped: bool) -> IO[str]:
    if gzipped:
        return gzip.open(source, "rt", encoding="utf-8-sig", newline="")
    return open(source, encoding="utf-8-sig", newline="")


def _check_header(source: Path, gzipped: bool) -> bool:
    """True when line 1 is a header; a header of the wrong width is an error right away."""
    try:
        with _open_text(source, gzipped) as handle:
            first = handle.readline().strip()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: cannot read as CSV text ({one_line(exc)})") from exc
    fields = first.split(",")
    if not first or all(_INTEGER.fullmatch(field) for field in fields):
        return False
    if len(fields) == INPUT_NODES + 1:
        raise DataError(f"{source}, line 1: header has 785 columns; {_LABELLED_HINT}")
    if len(fields) != INPUT_NODES:
        raise DataError(
            f"{source}, line 1: header has {len(fields)} columns, expected {INPUT_NODES} "
            "(pixel0..pixel783)"
        )
    return True


def _parse_fast(source: Path, gzipped: bool, has_header: bool) -> IntArray:
    """Whole-file parse with pyarrow into (n, 784) int16 (wide enough to range-check)."""
    names = [f"pixel{i}" for i in range(INPUT_NODES)]
    stream = pa.input_stream(str(source), compression="gzip" if gzipped else None)
    table = pacsv.read_csv(
        stream,
        read_options=pacsv.ReadOptions(
            column_names=names, skip_rows=int(has_header), block_size=1 << 24
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.int16()),
            null_values=[],
            quoted_strings_can_be_null=False,
        ),
    )
    values = np.empty((table.num_rows, INPUT_NODES), dtype=np.int16)
    for index, column in enumerate(table.columns):
        values[:, index] = column.to_numpy()
    return values


def _first_bad_line(
    source: Path, gzipped: bool, has_header: bool, cause: BaseException | None
) -> str:
    """Message for the first line that is not 784 integers in 0..255 (blank lines skipped)."""
    number = rows = 0
    try:
        with _open_text(source, gzipped) as handle:
            for number, line in enumerate(handle, start=1):
                text = line.strip()
                if (number == 1 and has_header) or not text:
                    continue
                rows += 1
                problem = _row_problem(text.split(","))
                if problem:
                    return f"{source}, line {number}: {problem}"
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        return f"{source}, line {number + 1}: cannot read ({one_line(exc)})"
    if rows == 0:
        return f"{source}: no data rows"
    detail = f" ({one_line(cause)})" if cause is not None else ""
    return f"{source}: not a clean pixel CSV{detail}"


def _row_problem(fields: list[str]) -> str | None:
    if len(fields) == INPUT_NODES + 1:
        return f"785 values; {_LABELLED_HINT}"
    if len(fields) != INPUT_NODES:
        return f"{len(fields)} values, expected {INPUT_NODES} pixel values"
    for column, field in enumerate(fields, start=1):
        if not _PIXEL.fullmatch(field):
            return f"column {column} is {field!r}, not an integer"
        if not 0 <= int(field) <= 255:
            return f"column {column} is {int(field)}, outside 0..255"
    return None
