"""Predict digits for image files, folders of images, or an unlabelled pixel CSV.

These are the library functions behind the `predict` command: no argument parsing, no Prefect.
Images go through `mnistnn.predict.image` first, because the network only knows MNIST's form; one
unreadable image never stops a batch, it becomes a `PredictFailure` with a one-line message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from mnistnn.core.files import atomic_write
from mnistnn.errors import DataError, one_line
from mnistnn.inert import shown
from mnistnn.model.network import NeuralNetwork
from mnistnn.predict.image import IMAGE_SUFFIXES, preprocess_image
from mnistnn.predict.inputs import InboxInput
from mnistnn.predict.tabular import csv_chunks
from mnistnn.types import FloatArray, IntArray, LabelArray, PixelArray

#: Rows scored per batched product: bounds the float copy of the inputs (~25 MB at float64).
QUERY_CHUNK: Final = 4096
#: Lines of a Kaggle submission formatted at once.
SUBMISSION_ROWS: Final = 65536
#: CSV text parsed at once by `predict --csv` (~1,100 rows): a quarter of the scoring inbox's
#: block, as fast and ~40 MB at peak instead of ~110 MB (a command-line tool run beside others).
CSV_BLOCK_BYTES: Final = 2 << 20


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
) -> LabelArray:
    """Predict every row of an unlabelled pixel CSV -> the digits (row i is ImageId i + 1).

    Streamed as the scoring inbox reads a CSV (`unlabelled_blocks`): one block of text and its
    scores are held at a time, plus one byte per row for the answers, so memory is bounded by
    the limits (`mnistnn.limits`), not by the file. With `out_path`, also writes the Kaggle
    submission layout (`ImageId,Label`) atomically, once every row has been read.
    """
    parts = [
        predict_pixels(network, block)[0].astype(np.uint8) for block in unlabelled_blocks(csv_path)
    ]
    digits: LabelArray = np.concatenate(parts)
    if out_path is not None:
        with atomic_write(out_path, "w") as handle:
            handle.writelines(submission_lines(digits))
    return digits


def submission_lines(digits: LabelArray) -> Iterator[str]:
    """The Kaggle layout (`ImageId,Label` then one line per row, ids from 1) in pieces of
    SUBMISSION_ROWS lines, never the whole text at once."""
    yield "ImageId,Label\n"
    for start in range(0, len(digits), SUBMISSION_ROWS):
        part = digits[start : start + SUBMISSION_ROWS].tolist()
        yield "".join(f"{start + index},{digit}\n" for index, digit in enumerate(part, 1))


def unlabelled_blocks(path: str | os.PathLike[str]) -> Iterator[PixelArray]:
    """The pixel rows of an unlabelled CSV (Kaggle test.csv: header `pixel0..pixel783` or none;
    plain or gzip, by content), a block at a time.

    The scoring inbox's reader (`tabular.csv_chunks`), within the same limits: a bomb, a
    newline-free or binary file is refused as it is read. Unlike scoring, one bad row fails the
    file (a submission needs every ImageId): a DataError naming the file and the row.
    """
    item = InboxInput(str(path), str(path), "csv", 0)
    for chunk in csv_chunks(item, CSV_BLOCK_BYTES):
        if chunk.failures:
            failure = chunk.failures[0]
            raise DataError(f"{failure.source}, row {failure.row}: {failure.reason}")
        yield chunk.pixels


def read_unlabelled_csv(path: str | os.PathLike[str]) -> PixelArray:
    """Every pixel row of an unlabelled CSV at once ((n, 784) uint8; `unlabelled_blocks`)."""
    return np.concatenate(list(unlabelled_blocks(path)))
