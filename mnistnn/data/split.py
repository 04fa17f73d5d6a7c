"""The recent-rows split: which rows of an inbox batch are kept out of training as recent test data.

Of each batch (never of the base), the rows whose hash falls below `recent_fraction` are held
out. The hash is of the row's own bytes (label and pixels), so the split is deterministic, needs
no random state, and a row lands on the same side in every snapshot that contains it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mnistnn.config import INPUT_NODES
from mnistnn.core.records import check_fraction
from mnistnn.types import LabelArray, PixelArray

#: The rule's name in a snapshot manifest (a new rule is a new name, never a silent change).
SPLIT_RULE = "rowhash-v1"
DEFAULT_RECENT_FRACTION = 0.1
#: The split's resolution: a row is recent when its hash mod 1000 < 1000 * recent_fraction.
BUCKETS = 1000

BoolArray = npt.NDArray[np.bool_]


def check_recent_fraction(value: object) -> float:
    """`recent_fraction` is a number in 0..0.5 (more would leave the batches mostly untrained)."""
    return check_fraction(value, "recent_fraction", 0.5)


def row_buckets(pixels: PixelArray, labels: LabelArray) -> npt.NDArray[np.uint64]:
    """Each row's bucket in 0..999: a 64-bit hash of its label byte and its 784 pixel bytes.

    Multilinear over the 98 little-endian 64-bit words of the pixels and the label, with fixed
    odd keys (`_KEYS`, a splitmix64 sequence), modulo 2**64; then the splitmix64 finalizer so
    that every bit of the row reaches the low digits. One integer matrix-vector product: a few
    milliseconds for 60,000 rows.
    """
    if pixels.ndim != 2 or pixels.shape[1] != INPUT_NODES or pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be (n, {INPUT_NODES}) uint8, got {pixels.shape}")
    words = np.ascontiguousarray(pixels).view("<u8")  # (n, 98)
    with np.errstate(over="ignore"):
        state: npt.NDArray[np.uint64] = words @ _KEYS[1:]
        state += (labels.astype(np.uint64) + np.uint64(1)) * _KEYS[0]
        state ^= state >> np.uint64(30)
        state *= np.uint64(0xBF58476D1CE4E5B9)
        state ^= state >> np.uint64(27)
        state *= np.uint64(0x94D049BB133111EB)
        state ^= state >> np.uint64(31)
    buckets: npt.NDArray[np.uint64] = state % np.uint64(BUCKETS)
    return buckets


def _splitmix64_keys(count: int, seed: int = 0x6D6E6973746E6E) -> npt.NDArray[np.uint64]:
    """`count` odd 64-bit keys from the splitmix64 sequence (pure integers: the same everywhere)."""
    mask = (1 << 64) - 1
    keys, state = [], seed
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        keys.append((z ^ (z >> 31)) | 1)
    return np.array(keys, dtype=np.uint64)


_KEYS = _splitmix64_keys(1 + INPUT_NODES // 8)


def recent_mask(pixels: PixelArray, labels: LabelArray, recent_fraction: float) -> BoolArray:
    """True for the rows kept out of training as recent test data."""
    cut = round(BUCKETS * check_recent_fraction(recent_fraction))
    if cut == 0 or len(labels) == 0:
        return np.zeros(len(labels), dtype=np.bool_)
    mask: BoolArray = row_buckets(pixels, labels) < np.uint64(cut)
    return mask


__all__ = ["check_recent_fraction", "recent_mask", "row_buckets"]
