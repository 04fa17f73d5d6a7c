"""Has the world shifted? Two rules flag a new labelled batch as drift; either is enough.

Accuracy (concept or covariate shift): the batch's labels are known, so the champion's accuracy
on it can stand next to its accuracy on the test set. A batch on which the champion scores more
than `threshold` (default 0.05, five points) below its test accuracy is flagged.

Labels (prior shift): the total variation distance (TVD, half the L1 distance of the label
shares, 0..1) between the batch's label histogram and the base training data's. A batch is
flagged when TVD > max(LABEL_TVD_FLOOR, LABEL_NOISE_Z * sqrt(1/n + 1/m)) for a batch of n rows
and a base of m rows; no champion is needed. The second term is sampling noise: for a batch
drawn from the base distribution, sqrt(n) * TVD hardly depends on n (multinomial draws from the
bundled labels, n = 20..50,000: mean 1.20, 99.9th percentile 2.25, 99.99th 2.5), so Z = 2.5
flags about one honest batch in 10,000 whatever its size, and the two-sample sqrt(1/n + 1/m)
covers a small base file too. Measured on `mnistnn simulate-batches` (seed 0, base = the 60,000
bundled training rows): the eight 1,000-row batches with untouched labels measure TVD
0.024-0.043 and the two label-skewed ones (70% two digits) 0.50; at 200 rows the untouched ones
reach 0.13, over a bare 0.10, which is why the bound grows with the noise (0.18 there) instead
of being a constant. The floor is the least shift worth a flag in a large batch. A chi-square
test was measured too and not used: its p-value mixes size and effect, so a harmless 3-point
shift between two digits (TVD 0.037) in a 20,000-row batch gets p = 4e-83, and it is unreliable
on small batches whose expected counts fall below 5.

The ink statistics (mean intensity, fraction of dark pixels) are compared with the base data's
and reported beside an accuracy flag; they explain a flag, they do not raise one. The one demo
batch that changes them (thick: mean intensity x1.98) is caught by the accuracy rule, and the
ink of a batch depends on its label mix (a 1 has far less ink than an 8), so an ink rule would
flag a pure prior shift twice unless it were per class. Every rule that fires names itself and
its numbers in `drift_reason`, joined by "; ".
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnistnn.config import N_CLASSES
from mnistnn.core.records import check_fraction
from mnistnn.data.parquet import read_parquet
from mnistnn.model.metrics import accuracy
from mnistnn.model.network import NeuralNetwork
from mnistnn.types import IntArray, PixelArray

DEFAULT_THRESHOLD = 0.05
#: The label rule (see the module docstring): the least TVD that flags, whatever the batch size,
LABEL_TVD_FLOOR = 0.10
#: and the sampling-noise bound's multiplier of sqrt(1/n + 1/m).
LABEL_NOISE_Z = 2.5
#: A pixel at or above this value is ink ("dark" on the paper the digit was written on).
DARK_LEVEL = 128


@dataclass(frozen=True)
class InkStats:
    """What a set of digits looks like: labels per class, mean intensity, share of dark pixels."""

    label_histogram: list[int]
    mean_intensity: float  # mean pixel value / 255, in 0..1
    dark_fraction: float  # share of pixels >= DARK_LEVEL
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def label_shares(self) -> list[float]:
        total = max(1, sum(self.label_histogram))
        return [count / total for count in self.label_histogram]


@dataclass(frozen=True)
class BatchDrift:
    """The drift check of one batch (JSON-able via `to_dict`)."""

    sha256: str
    champion_accuracy: float | None
    test_accuracy: float | None
    label_histogram: list[int]
    mean_intensity: float
    dark_fraction: float
    drift: bool
    drift_reason: str | None
    rows: int = 0
    threshold: float = DEFAULT_THRESHOLD
    base_mean_intensity: float | None = None
    base_dark_fraction: float | None = None
    label_distance: float | None = None  # total variation distance to the base labels, 0..1
    label_limit: float | None = None  # the TVD above which the label rule flags (None: not run)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_threshold(value: object, name: str = "drift_threshold") -> float:
    """A drift threshold is a finite number in 0..1 (a drop in accuracy)."""
    return check_fraction(value, name)


def ink_stats(pixels: PixelArray, labels: IntArray) -> InkStats:
    """Label histogram, mean intensity and dark fraction of (n, 784) uint8 digits."""
    histogram = np.bincount(np.asarray(labels, dtype=np.int64), minlength=N_CLASSES)
    n = int(pixels.shape[0])
    if n == 0:
        return InkStats(histogram.tolist(), 0.0, 0.0, 0)
    mean = float(np.mean(pixels, dtype=np.float64)) / 255.0
    dark = float(np.count_nonzero(pixels >= DARK_LEVEL)) / pixels.size
    return InkStats(histogram.tolist(), mean, dark, n)


def label_distance(a: InkStats, b: InkStats) -> float:
    """Total variation distance between two label distributions (0 same, 1 disjoint)."""
    return 0.5 * sum(abs(x - y) for x, y in zip(a.label_shares, b.label_shares, strict=True))


def label_limit(rows: int, base_rows: int) -> float | None:
    """The TVD above which a batch of `rows` labels is a label shift from `base_rows` labels.

    None when either side has no labels (there is no distribution to compare).
    """
    if rows <= 0 or base_rows <= 0:
        return None
    return max(LABEL_TVD_FLOOR, LABEL_NOISE_Z * math.sqrt(1 / rows + 1 / base_rows))


def label_shift(stats: InkStats, base: InkStats) -> str | None:
    """`label shift: TVD 0.52 > 0.10 (digit 3 36% vs 10%, ...)` when the label rule fires."""
    limit = label_limit(stats.rows, sum(base.label_histogram))
    distance = label_distance(stats, base)
    if limit is None or distance <= limit:
        return None
    shares, base_shares = stats.label_shares, base.label_shares
    # the digits that gained the most share are the ones a reader wants named
    gained = sorted(range(N_CLASSES), key=lambda d: base_shares[d] - shares[d])[:2]
    named = ", ".join(
        f"digit {d} {100 * shares[d]:.0f}% vs {100 * base_shares[d]:.0f}%"
        for d in gained
        if shares[d] > base_shares[d]
    )
    return f"label shift: TVD {distance:.2f} > {limit:.2f} ({named} in the base data)"


def check_batch(
    batch_parquet: str | os.PathLike[str],
    champion: NeuralNetwork | None,
    champion_test_accuracy: float | None,
    base_stats: InkStats,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    sha256: str | None = None,
) -> BatchDrift:
    """Score the champion on the batch's rows and compare them with the base training data.

    `sha256` defaults to the source hash recorded in the Parquet file's name (its first 16 hex
    digits) when not given.
    """
    limit = check_threshold(threshold)
    pixels, labels = read_parquet(batch_parquet)
    stats = ink_stats(pixels, labels)
    return drift_of(
        sha256 or os.path.basename(os.fspath(batch_parquet)).split(".")[0],
        pixels,
        labels,
        champion,
        champion_test_accuracy,
        base_stats,
        threshold=limit,
        stats=stats,
    )


def drift_of(
    sha256: str,
    pixels: PixelArray,
    labels: IntArray,
    champion: NeuralNetwork | None,
    champion_test_accuracy: float | None,
    base_stats: InkStats,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    stats: InkStats | None = None,
) -> BatchDrift:
    """`check_batch` on arrays already in memory."""
    limit = check_threshold(threshold)
    stats = stats or ink_stats(pixels, labels)
    score = None if champion is None or len(labels) == 0 else _accuracy(champion, pixels, labels)
    fired, notes = [], []
    if champion is None:
        notes.append("no champion yet: accuracy not checked")
    elif champion_test_accuracy is None:
        notes.append("the champion's test accuracy is unknown: accuracy not compared")
    elif score is not None and score < champion_test_accuracy - limit - 1e-12:
        drop = champion_test_accuracy - score
        fired.append(
            f"champion accuracy {score:.4f} on the batch is {100 * drop:.1f} points below its "
            f"test accuracy {champion_test_accuracy:.4f} (threshold {100 * limit:g})"
            f"{_ink_note(stats, base_stats)}"
        )
    labels_fired = label_shift(stats, base_stats)
    if labels_fired is not None:
        fired.append(labels_fired)
    drift = bool(fired)
    reason = "; ".join(fired + notes) or None
    return BatchDrift(
        sha256=sha256,
        champion_accuracy=score,
        test_accuracy=champion_test_accuracy,
        label_histogram=stats.label_histogram,
        mean_intensity=stats.mean_intensity,
        dark_fraction=stats.dark_fraction,
        drift=drift,
        drift_reason=reason,
        rows=stats.rows,
        threshold=limit,
        base_mean_intensity=base_stats.mean_intensity,
        base_dark_fraction=base_stats.dark_fraction,
        label_distance=label_distance(stats, base_stats),
        label_limit=label_limit(stats.rows, sum(base_stats.label_histogram)),
    )


def _accuracy(network: NeuralNetwork, pixels: PixelArray, labels: IntArray) -> float:
    return float(accuracy(network.query(pixels), labels))


def _ink_note(stats: InkStats, base: InkStats) -> str:
    """` (mean intensity 0.171 vs 0.131 in the base data)`: what differs besides the labels."""
    notes = []
    if base.mean_intensity > 0 and abs(stats.mean_intensity / base.mean_intensity - 1) > 0.1:
        notes.append(f"mean intensity {stats.mean_intensity:.3f} vs {base.mean_intensity:.3f}")
    if base.dark_fraction > 0 and abs(stats.dark_fraction / base.dark_fraction - 1) > 0.1:
        notes.append(f"dark pixels {stats.dark_fraction:.3f} vs {base.dark_fraction:.3f}")
    # the label mix is the label rule's to report, in its own reason
    return " (" + ", ".join(notes) + " in the base data)" if notes else ""


__all__ = [
    "BatchDrift",
    "InkStats",
    "check_batch",
    "check_threshold",
    "drift_of",
    "ink_stats",
    "label_limit",
    "label_shift",
]
