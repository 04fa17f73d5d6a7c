"""Reading one inbox input in bounded chunks: `read_chunks` by kind, image files a batch at a time.

CSV and Parquet inputs are parsed in `tabular`; images are preprocessed (`image.preprocess_image`)
IMAGE_BATCH per chunk, and an image that fails is listed with its chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import numpy as np

from mnistnn.config import INPUT_NODES
from mnistnn.errors import DataError, one_line
from mnistnn.inert import shown
from mnistnn.predict.image import IMAGE_SUFFIXES, preprocess_image
from mnistnn.predict.inputs import Chunk, InboxInput, InputRefused, RowFailure
from mnistnn.predict.tabular import BLOCK_BYTES, csv_chunks, parquet_chunks
from mnistnn.types import PixelArray

#: Images preprocessed per chunk.
IMAGE_BATCH: Final = 256


# -- reading ---------------------------------------------------------------------------------
def read_chunks(item: InboxInput, *, block_bytes: int = BLOCK_BYTES) -> Iterator[Chunk]:
    """The input's rows in chunks of bounded size, failed rows listed with each chunk.

    Raises InputRefused (before any chunk) when the input as a whole cannot be scored.
    """
    if item.kind == "csv":
        return csv_chunks(item, block_bytes)
    if item.kind == "parquet":
        return parquet_chunks(item)
    return _image_chunks(item)


# -- images ----------------------------------------------------------------------------------
def image_failure(member: str, exc: Exception) -> str:
    """One line for an image that failed: our message without its path, or what went wrong."""
    if isinstance(exc, DataError):
        return one_line(exc).replace(f"{shown(member)}: ", "", 1)
    if isinstance(exc, MemoryError):
        return "out of memory while decoding (see the image limits in mnistnn.limits)"
    return f"unreadable image ({type(exc).__name__}: {shown(one_line(exc))})"


def _image_chunks(item: InboxInput) -> Iterator[Chunk]:
    if not item.members:
        raise InputRefused(
            f"{shown(item.name)}: no image files ({' '.join(sorted(IMAGE_SUFFIXES))})"
        )
    total = len(item.members)
    for start in range(0, total, IMAGE_BATCH):
        rows: list[PixelArray] = []
        sources: list[str] = []
        failures: list[RowFailure] = []
        for member in item.members[start : start + IMAGE_BATCH]:
            source = item.member_name(member)
            try:
                rows.append(preprocess_image(member))
            except Exception as exc:  # no poison pill: any error fails this image only
                failures.append(RowFailure(source, None, image_failure(member, exc)))
            else:
                sources.append(source)
        pixels = np.stack(rows) if rows else np.empty((0, INPUT_NODES), dtype=np.uint8)
        done = min(start + IMAGE_BATCH, total) / total
        yield Chunk(pixels, None, sources, failures, done)


__all__ = ["IMAGE_BATCH", "read_chunks"]
