"""Demo batches for the labelled inbox: slices of the bundled training data, some visibly shifted.

`simulate_batches` writes MNIST CSV files (no header, label then 784 pixels, as the bundled
files are) named `sim-<kind>-<NN>.csv`, cycling through the kinds:

    plain      rows as they are                       (no drift)
    rotated    each digit turned by 25-40 degrees      (the champion's accuracy drops)
    thick      strokes dilated by a 3x3 window         (much more ink: mean intensity up)
    offcentre  each digit moved 3-5 pixels off centre  (the champion's accuracy drops)
    skewed     70% of the rows are one or two digits   (the label histogram is skewed)

Rows are drawn from the *training* file only (the test set stays the fixed yardstick), and
every batch is deterministic per (seed, batch number). Plain numpy and scipy: no Prefect.
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from mnistnn.config import IMAGE_SIDE, INPUT_NODES, N_CLASSES
from mnistnn.core.files import write_bytes_atomic
from mnistnn.data.fast_csv import read_csv
from mnistnn.errors import ConfigError
from mnistnn.types import LabelArray, PixelArray

KINDS = ("plain", "rotated", "thick", "offcentre", "skewed")
PREFIX = "sim-"
#: Rotation in degrees (either direction), shift in pixels, share of the skewed digits.
ROTATION = (25.0, 40.0)
SHIFT = (3, 5)
SKEW_SHARE = 0.7


@dataclass(frozen=True)
class SimulatedBatch:
    """One written demo batch."""

    name: str
    kind: str
    path: str
    rows: int
    label_counts: list[int]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)


def batch_name(number: int, kind: str) -> str:
    """`sim-rotated-02.csv` for batch 2 of kind rotated."""
    return f"{PREFIX}{kind}-{number:02d}.csv"


def kind_of(number: int) -> str:
    """Batch `number` (1-based) cycles through KINDS: 1 plain, 2 rotated, ... 6 plain again."""
    return KINDS[(number - 1) % len(KINDS)]


def simulate_batches(
    train_csv: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    count: int = len(KINDS),
    rows: int = 1000,
    seed: int = 0,
) -> list[SimulatedBatch]:
    """Write `count` batches of `rows` rows each into `out`; return what was written."""
    _check_count("count", count)
    _check_count("rows", rows)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    pixels, labels = read_csv(train_csv)
    if rows > len(labels):
        raise ConfigError(f"rows must be at most {len(labels)} (the rows of {train_csv})")
    folder = Path(out)
    written = []
    for number in range(1, count + 1):
        kind = kind_of(number)
        batch_pixels, batch_labels = make_batch(
            pixels, labels, kind, rows, seed=seed, number=number
        )
        path = folder / batch_name(number, kind)
        write_bytes_atomic(path, to_csv_bytes(batch_pixels, batch_labels))
        written.append(
            SimulatedBatch(
                name=path.name,
                kind=kind,
                path=str(path),
                rows=rows,
                label_counts=np.bincount(batch_labels, minlength=N_CLASSES).tolist(),
            )
        )
    return written


def make_batch(
    pixels: PixelArray, labels: LabelArray, kind: str, rows: int, *, seed: int, number: int
) -> tuple[PixelArray, LabelArray]:
    """The rows of one batch of `kind`, drawn from (pixels, labels) with its own generator."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    rng = np.random.default_rng([seed, number])
    if kind == "skewed":
        index = _skewed_rows(labels, rows, rng)
    else:
        index = np.sort(rng.choice(len(labels), size=rows, replace=False))
    chosen, chosen_labels = pixels[index], labels[index].copy()
    if kind == "rotated":
        chosen = rotate(chosen, rng)
    elif kind == "thick":
        chosen = thicken(chosen)
    elif kind == "offcentre":
        chosen = offcentre(chosen, rng)
    return np.ascontiguousarray(chosen, dtype=np.uint8), chosen_labels


def rotate(pixels: PixelArray, rng: np.random.Generator) -> PixelArray:
    """Turn each image by a random angle of 25-40 degrees, clockwise or not."""
    angles = rng.uniform(*ROTATION, size=len(pixels)) * rng.choice([-1.0, 1.0], size=len(pixels))
    images = _images(pixels).astype(np.float64)
    out = np.empty_like(images)
    for i, angle in enumerate(angles):
        out[i] = ndimage.rotate(images[i], angle, reshape=False, order=1, cval=0.0)
    return _pixels(out)


def thicken(pixels: PixelArray) -> PixelArray:
    """Dilate every stroke with a 3x3 window (a thicker pen)."""
    return _pixels(ndimage.grey_dilation(_images(pixels), size=(1, 3, 3)))


def offcentre(pixels: PixelArray, rng: np.random.Generator) -> PixelArray:
    """Move each digit 3-5 pixels along both axes, each in a random direction (zeros fill in)."""
    n = len(pixels)
    shifts = rng.integers(SHIFT[0], SHIFT[1] + 1, size=(n, 2)) * rng.choice([-1, 1], size=(n, 2))
    images = _images(pixels)
    out = np.zeros_like(images)
    for i, (dy, dx) in enumerate(shifts):
        source = images[
            i, max(0, -dy) : IMAGE_SIDE - max(0, dy), max(0, -dx) : IMAGE_SIDE - max(0, dx)
        ]
        out[
            i, max(0, dy) : max(0, dy) + source.shape[0], max(0, dx) : max(0, dx) + source.shape[1]
        ] = source
    return _pixels(out)


def _skewed_rows(labels: LabelArray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """SKEW_SHARE of the rows from two digits chosen at random, the rest from the others."""
    favoured = rng.choice(N_CLASSES, size=2, replace=False)
    is_favoured = np.isin(labels, favoured)
    n_favoured = min(round(rows * SKEW_SHARE), int(is_favoured.sum()))
    n_others = rows - n_favoured
    picked = np.concatenate(
        [
            rng.choice(np.flatnonzero(is_favoured), size=n_favoured, replace=False),
            rng.choice(np.flatnonzero(~is_favoured), size=n_others, replace=False),
        ]
    )
    return np.sort(picked)


def to_csv_bytes(pixels: PixelArray, labels: LabelArray) -> bytes:
    """Rows as the bundled files have them: label then 784 pixels, no header."""
    if pixels.ndim != 2 or pixels.shape[1] != INPUT_NODES or len(labels) != len(pixels):
        raise ConfigError(f"expected (n, {INPUT_NODES}) pixels and n labels")
    table = np.column_stack([labels.astype(np.int64), pixels.astype(np.int64)])
    buffer = io.BytesIO()
    np.savetxt(buffer, table, fmt="%d", delimiter=",")
    return buffer.getvalue()


def _images(pixels: PixelArray) -> PixelArray:
    return pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)


def _pixels(images: npt.NDArray[Any]) -> PixelArray:
    clipped: PixelArray = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return clipped.reshape(-1, INPUT_NODES)


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
