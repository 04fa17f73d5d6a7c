"""Raw bytes to CSV text: gzip detection and inflation, BOM, encoding checks, header, body bounds.

Everything here is about the file as a whole, before any line is parsed: a source that fails
these checks is one file-level DataError, never thousands of rejected rows.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import zlib
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mnistnn.data.rules import NUMBER_RE
from mnistnn.errors import DataError
from mnistnn.limits import Budget

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
CSV_BLOCK_SIZE = 1 << 22  # 4 MiB blocks: measured fastest for 785-column rows on 2 cores
READ_SIZE = 1 << 20  # bytes read (and inflated) at a time
BLOCK_BYTES = 32 << 20  # text parsed at once (~18,000 rows): bounds a block's temporaries
_TRAILING_BLANKS = b" \t\r\n"
NON_BLANK_RE = re.compile(rb"[^ \t\r\n]")


def is_gzip(data: bytes) -> bool:
    """True when the bytes start with the gzip magic number (content decides, not the name)."""
    return data.startswith(GZIP_MAGIC)


def is_gzip_file(path: str | os.PathLike[str]) -> bool:
    """`is_gzip` on the first two bytes of a file."""
    with open(path, "rb") as handle:
        return is_gzip(handle.read(2))


def open_regular(path: str | os.PathLike[str], shown: object = None) -> BinaryIO:
    """Open a file for reading only if it is a regular file; never blocks.

    Opened with O_NONBLOCK and checked with fstat on the open descriptor (no race with a rename):
    a FIFO, a device or a socket is refused with one line instead of blocking a reader forever.
    """
    name = path if shown is None else shown
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, not a file") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot be read ({exc.strerror or exc})") from exc
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        if stat.S_ISDIR(mode):
            raise DataError(f"{name}: is a directory, not a file")
        raise DataError(f"{name}: {file_kind(mode)}, not a regular file; refused")
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for one-line refusals)."""
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    )
    return next((words for test, words in kinds if test(mode)), "not a regular file")


def decoded_chunks(
    source: object, handle: BinaryIO, budget: Budget, digest: Any = None, size: int = READ_SIZE
) -> Iterator[bytes]:
    """The file's text in chunks of at most `size` bytes, gunzipped on the fly when its
    bytes say gzip (several members allowed); `digest` (a hashlib object) sees the raw bytes.

    Never inflates more than one chunk ahead: a decompression bomb costs one chunk of memory
    and is refused by the budget (decoded bytes, time) or the first check on its text.
    """
    first = handle.read(size)
    if digest is not None:
        digest.update(first)
    gzipped = is_gzip(first)
    if not gzipped and getattr(source, "name", str(source)).lower().endswith(".gz") and first:
        raise DataError(f"{source}: corrupt gzip file (named .gz but has no gzip header)")
    raw = _raw_chunks(handle, first, digest, size)
    chunks = _inflated(source, raw, size) if gzipped else raw
    for chunk in chunks:
        budget.add_bytes(len(chunk))
        yield chunk


def _raw_chunks(handle: BinaryIO, first: bytes, digest: Any, size: int) -> Iterator[bytes]:
    data = first
    while data:
        yield data
        data = handle.read(size)
        if digest is not None:
            digest.update(data)


def _inflated(source: object, raw: Iterator[bytes], size: int) -> Iterator[bytes]:
    inflater = zlib.decompressobj(wbits=31)
    member_open = False  # input fed to a member that has not ended yet: truncated if it stays
    padding = False  # after the last member: only NUL bytes may follow
    try:
        for data in raw:
            if padding and data.strip(b"\x00"):
                raise zlib.error("data after the zero padding that ends the last member")
            while data and not padding:
                member_open = True
                out = inflater.decompress(data, size)
                if out:
                    yield out
                if not inflater.eof:
                    data = inflater.unconsumed_tail
                    continue
                member_open = False
                data = inflater.unused_data
                padding = not data.strip(b"\x00")  # zero padding after the last member
                if padding:
                    break
                inflater = zlib.decompressobj(wbits=31)  # another gzip member follows
        if member_open:
            tail = inflater.flush()
            if tail:
                yield tail
            if not inflater.eof:
                raise DataError(
                    f"{source}: truncated gzip file (it ends before the compressed data does)"
                )
    except zlib.error as exc:
        raise DataError(f"{source}: corrupt gzip file ({exc})") from None


def line_blocks(
    source: object, chunks: Iterable[bytes], budget: Budget, block_bytes: int = BLOCK_BYTES
) -> Iterator[tuple[int, bytes]]:
    """(number of its first line, block) for blocks of whole lines of about `block_bytes`.

    Linear whatever the input: each chunk is searched once for its last newline, and a line
    longer than the budget's line limit is refused as soon as it is (a newline-free input
    costs one line's worth of memory). The first chunk is checked for UTF-16 and binary data,
    every chunk for NUL bytes, so a bomb of zeros stops after its first chunk. Every line
    counts against the row limit.
    """
    pending = bytearray()
    line = 1  # the number of pending's first line
    cut = 0  # pending[:cut] is whole lines
    first = True
    for chunk in chunks:
        if first:
            _check_start(source, chunk)
            first = False
        if b"\x00" in chunk:
            raise DataError(f"{source}: binary data, not CSV text (NUL byte near line {line})")
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            cut = len(pending) + newline + 1
        pending += chunk
        if len(pending) - cut > budget.max_line:  # the open line; numbered only when refused
            budget.check_line(len(pending) - cut, line + pending.count(b"\n", 0, cut))
        if cut and len(pending) >= block_bytes:
            block = bytes(pending[:cut])
            del pending[:cut]
            cut = 0
            line = yield from _emit(budget, line, block)
    if pending:
        yield from _emit(budget, line, bytes(pending))


def _emit(budget: Budget, line: int, block: bytes) -> Generator[tuple[int, bytes], None, int]:
    """Yield one block after its line-length and row checks; the number of the next line."""
    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.zeros(1, dtype=np.int64)
    lengths = (ends if len(ends) else np.array([len(block)])) - starts
    if lengths.size and int(lengths.max()) > budget.max_line:
        budget.check_line(int(lengths.max()), line + int(np.argmax(lengths)))
    count = len(ends) + (0 if block.endswith(b"\n") else 1)
    budget.add_rows(count)
    yield line, block
    return line + len(ends)


def _check_start(source: object, chunk: bytes) -> None:
    """UTF-16 (with or without a byte-order mark) is one file-level error, not rows of garbage."""
    head = chunk[:4096]
    half = len(head) // 2
    odd, even = head[1::2].count(b"\x00"), head[0::2].count(b"\x00")
    if head.startswith(UTF16_BOMS) or (
        half >= 4 and max(odd, even) > 0.4 * half > 4 * min(odd, even)
    ):
        raise DataError(f"{source}: UTF-16 text; save it as UTF-8 (or ASCII) CSV")


def strip_bom(text: bytes) -> bytes:
    return text[len(UTF8_BOM) :] if text.startswith(UTF8_BOM) else text


def check_text(source: object, text: bytes, first_line: int = 1) -> None:
    """Binary, UTF-16 or non-UTF-8 content is a file-level error, not 60,000 bad rows.

    `text` is whole lines starting at line `first_line` of the file (one block of it).
    """
    if first_line == 1 and text.startswith(UTF16_BOMS):
        raise DataError(f"{source}: UTF-16 text; save it as UTF-8 (or ASCII) CSV")
    nul = text.find(b"\x00")
    if nul >= 0:
        line = first_line - 1 + _line_of(text, nul)
        raise DataError(f"{source}: binary data, not CSV text (NUL byte at line {line})")
    if not text.isascii():
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{source}: not UTF-8 text (byte 0x{text[exc.start]:02x} at line "
                f"{first_line - 1 + _line_of(text, exc.start)}); binary data or another encoding"
            ) from None


def _line_of(text: bytes, offset: int) -> int:
    return text.count(b"\n", 0, offset) + 1


def header_of(first_line: bytes) -> str | None:
    """The first line is a header when its label field is not a number (e.g. `label`)."""
    line = first_line.decode("utf-8", errors="replace").strip()
    first_field = line.split(",", 1)[0].strip(" \t")
    if not first_field or NUMBER_RE.fullmatch(first_field):
        return None
    return line


def body_bounds(source: Path, text: bytes) -> tuple[int, int, int, str | None]:
    """(start, end, line number at start, header): the data rows are text[start:end]."""
    end = len(text.rstrip(_TRAILING_BLANKS))  # a missing or extra final newline is not a row
    newline = text.find(b"\n", 0, end)
    header = header_of(text[: newline if newline >= 0 else end])
    if header is None:
        return 0, end, 1, None
    if newline < 0 or NON_BLANK_RE.search(text, newline + 1, end) is None:
        raise DataError(f"{source}: header only, no data rows (header: {header[:60]!r})")
    logger.info("%s: line 1 is a header (%.60s), skipped", source, header)
    return newline + 1, end, 2, header
