"""Every limit on one input file, declared once: its default, why, and the variable that raises it.

An unattended pipeline reads whatever lands in its folders, so every reader checks these limits as
it goes (never after inflating or decoding a whole file): a file over one is refused with one line
naming the limit and how to raise it (`LimitExceeded`). The defaults let the largest legitimate
inputs through with a wide margin (the MNIST files, a 1,000,000-row batch, a 48-megapixel photo)
and keep the peak memory of one file to about a gigabyte. A limit is read from the environment
each time a file is opened, so a worker's environment (or a test's child process) sets it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from mnistnn.errors import ConfigError, DataError


@dataclass(frozen=True)
class Limit:
    """One limit: its name in messages, the environment variable that sets it, its default."""

    name: str
    env: str
    default: int
    unit: str
    why: str

    def value(self) -> int:
        """The limit in force: the environment variable when set (an integer >= 1), else the
        default."""
        given = os.environ.get(self.env)
        if given is None or not given.strip():
            return self.default
        try:
            value = int(given.strip().replace("_", ""))
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"{self.env} must be an integer >= 1 ({self.unit}), got {given!r}")
        return value


DECODED_BYTES: Final = Limit(
    "max_decoded_bytes",
    "MNISTNN_MAX_DECODED_BYTES",
    4 << 30,
    "bytes",
    "text of one CSV after gunzip: a 1,000,000-row MNIST batch is 1.8 GB (3.2 GB if every "
    "pixel were 255); readers stream, so this bounds time, not memory",
)
ROWS: Final = Limit(
    "max_rows",
    "MNISTNN_MAX_ROWS",
    1_000_000,
    "rows",
    "lines of one CSV (rejected ones included): the largest batch we take; ingest keeps 785 "
    "bytes per accepted row, so 1,000,000 rows bound its arrays to 785 MB",
)
LINE_BYTES: Final = Limit(
    "max_line_bytes",
    "MNISTNN_MAX_LINE_BYTES",
    64 << 10,
    "bytes",
    "one CSV line: an MNIST row is at most 3.2 KB (785 fields of 255), 20x margin",
)
IMAGE_PIXELS: Final = Limit(
    "max_image_pixels",
    "MNISTNN_MAX_IMAGE_PIXELS",
    50_000_000,
    "pixels",
    "width x height of one image, checked before decoding: a 48-megapixel photo passes",
)
IMAGE_BYTES: Final = Limit(
    "max_image_bytes",
    "MNISTNN_MAX_IMAGE_BYTES",
    200_000_000,
    "bytes",
    "one image as Pillow holds it decoded (1, 2 or 4 bytes a pixel), checked before decoding: "
    "a 48-megapixel colour photo (192 MB) passes; binds when max_image_pixels is raised",
)
IMAGE_SECONDS: Final = Limit(
    "max_image_seconds",
    "MNISTNN_MAX_IMAGE_SECONDS",
    30,
    "seconds",
    "decoding one image, checked at each block the decoder reads: an image at the pixel and "
    "byte limits (49 megapixels RGBA) decodes in about 1.3 s of CPU; the byte limit bounds "
    "the work, this stops what it cannot see (junk after the image data, a scan bomb)",
)
SECONDS: Final = Limit(
    "max_seconds",
    "MNISTNN_MAX_SECONDS",
    900,
    "seconds",
    "reading one input: a 1,000,000-row batch takes about a minute to ingest or score",
)

LIMITS: Final = (
    DECODED_BYTES,
    ROWS,
    LINE_BYTES,
    IMAGE_PIXELS,
    IMAGE_BYTES,
    IMAGE_SECONDS,
    SECONDS,
)


class LimitExceeded(DataError):
    """A file over one of the limits: one line naming the file, the limit and how to raise it."""

    def __init__(self, source: object, limit: Limit, detail: str) -> None:
        self.limit = limit
        super().__init__(
            f"{source}: {detail}: over the {limit.name} limit ({limit.value():,} {limit.unit}); "
            f"set {limit.env} to raise it"
        )


class Budget:
    """The limits of one file being read, checked as it goes: decoded bytes, rows, time."""

    def __init__(self, source: object) -> None:
        self.source = source
        self.max_bytes = DECODED_BYTES.value()
        self.max_rows = ROWS.value()
        self.max_line = LINE_BYTES.value()
        self.max_seconds = SECONDS.value()
        self.deadline = time.monotonic() + self.max_seconds
        self.decoded = 0
        self.rows = 0

    def add_bytes(self, count: int) -> None:
        """Count decoded bytes (and check the clock: this runs once per chunk read)."""
        self.decoded += count
        if self.decoded > self.max_bytes:
            raise LimitExceeded(
                self.source, DECODED_BYTES, f"more than {self.max_bytes:,} bytes once decompressed"
            )
        self.check_time()

    def add_rows(self, count: int) -> None:
        self.rows += count
        if self.rows > self.max_rows:
            raise LimitExceeded(self.source, ROWS, f"more than {self.max_rows:,} rows")

    def check_line(self, length: int, line: int) -> None:
        if length > self.max_line:
            raise LimitExceeded(
                self.source, LINE_BYTES, f"line {line} is longer than {self.max_line:,} bytes"
            )

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(self.source, SECONDS, "still being read after the time limit")


class TimedReader:
    """A binary file whose every `read` checks a deadline (IMAGE_SECONDS from now): a decoder
    that pulls its input a block at a time (Pillow's, 64 KB) is stopped within one block of the
    limit. Everything else is the file's own (libtiff reads through `fileno` unchecked: the
    pixel and byte limits bound its work)."""

    def __init__(self, raw: BinaryIO, source: object) -> None:
        self._raw = raw
        self._source = source
        self._seconds = IMAGE_SECONDS.value()
        self._deadline = _clock() + self._seconds

    def read(self, size: int = -1) -> bytes:
        if _clock() > self._deadline:
            raise LimitExceeded(
                self._source, IMAGE_SECONDS, f"still decoding after {self._seconds:,} seconds"
            )
        return self._raw.read(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


_clock = time.monotonic  # the deadline's clock (a test moves it on)


def describe() -> list[str]:
    """One line per limit, with the value in force: for `--help` texts and logs."""
    return [f"{limit.env}={limit.value()} ({limit.name}, {limit.unit})" for limit in LIMITS]


__all__ = ["LIMITS", "Budget", "Limit", "LimitExceeded", "TimedReader", "describe"]
