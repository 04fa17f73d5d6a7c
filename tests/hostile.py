"""The hostile corpus, built on the fly (no big file committed), and a child runner that measures.

Bombs are multi-member gzip files: one small compressed member repeated, so a file of 2 MB
inflates to 2 GB without the test ever compressing 2 GB. Images are PNGs written row by row.
`run_child` runs a command in a child process and reports its peak RSS (`ru_maxrss` of the
wrapper's children) and wall time.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ROW = (",".join(["0"] * 785) + "\n").encode()  # a valid labelled row (label 0, 784 pixels)
PIXEL_ROW = (",".join(["0"] * 784) + "\n").encode()
SECRET = "API_KEY=sk-live-0123456789"

#: Small limits for the child processes: bombs are refused after little work.
SMALL_LIMITS = {
    "MNISTNN_MAX_ROWS": "1000",
    "MNISTNN_MAX_DECODED_BYTES": str(64 << 20),
    "MNISTNN_MAX_SECONDS": "60",
}
#: A name with a newline that would forge a whole output line, one with ANSI escapes.
FORGED_NEWLINE = "fake.csv\nrefused other.csv: injected.csv"
FORGED_ANSI = "\x1b[31mred\x1b[0m.csv"
FORMULA = '=HYPERLINK("evil.example?x","click").csv'


def gzip_members(member: bytes, count: int) -> bytes:
    """`count` gzip members of `member`: a valid gzip file inflating to count x len(member)."""
    return gzip.compress(member, compresslevel=9) * count


def zero_bomb() -> bytes:
    """2 MB of gzip inflating to 2 GB of NUL bytes."""
    return gzip_members(bytes(1 << 20), 2000)


def rows_bomb(row: bytes = ROW) -> bytes:
    """A few MB of gzip inflating to 1,200,000 valid rows (1.9 GB)."""
    return gzip_members(row * 1000, 1200)


def newline_free() -> bytes:
    """2 MB of gzip inflating to one 2 GB line."""
    return gzip_members(b"1" * (1 << 20), 2000)


def png(path: Path, width: int, height: int, bit_depth: int, colour: int, channels: int) -> Path:
    """A black PNG written row by row (its declared size is what matters; never decoded here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = _gcd_rows(height)
    block = bytes(1 + width * channels * bit_depth // 8) * rows  # filter byte 0, then zeros
    # One block compressed once and repeated: a full flush resets the compressor, so the copies
    # form one valid deflate stream (the Adler-32 of the whole is still computed over it all).
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    part = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(height // rows):
        adler = zlib.adler32(block, adler)
    idat = b"\x78\xda" + part * (height // rows) + deflate.flush() + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def _gcd_rows(height: int) -> int:
    """Rows per repeated block: a divisor of the height, at most 100."""
    return max(d for d in range(1, min(height, 100) + 1) if height % d == 0)


def poison_png(path: Path) -> Path:
    """78 KB declaring 80,000,000 x 1 grey pixels."""
    return png(path, 80_000_000, 1, 8, 0, 1)


def wide_png(path: Path) -> Path:
    """9000 x 9000 16-bit RGBA: under Pillow's pixel limit, 648 MB once decoded."""
    return png(path, 9000, 9000, 16, 6, 4)


def float_tiff(path: Path, value: float) -> Path:
    """A float TIFF holding a digit-like stroke and one pixel of `value` (inf or NaN)."""
    image = np.zeros((28, 28), dtype=np.float32)
    image[6:22, 12:16] = 1.0
    image[0, 0] = value
    Image.fromarray(image, mode="F").save(path)
    return path


def digit_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels.reshape(28, 28).astype(np.uint8)).save(path)
    return path


def labelled_csv(path: Path, pixels: np.ndarray, labels: np.ndarray) -> Path:
    lines = [
        f"{label}," + ",".join(map(str, row)) for row, label in zip(pixels, labels, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def pixel_csv(path: Path, pixels: np.ndarray, extra: str = "") -> Path:
    lines = [",".join(map(str, row)) for row in pixels.astype(np.int64)]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def secret_outside(tmp: Path) -> Path:
    """A file outside the data folder holding a secret line (and valid rows around it)."""
    outside = tmp / "elsewhere"
    outside.mkdir(exist_ok=True)
    target = outside / "secret.csv"
    target.write_bytes(ROW * 3 + SECRET.encode() + b"\n" + ROW * 3)
    return target


@dataclass(frozen=True)
class Ran:
    """A finished child: exit status, output, wall seconds, peak RSS in MB."""

    code: int
    out: str
    err: str
    seconds: float
    peak_mb: float

    def assert_inert(self) -> None:
        """No traceback, no raw escape code, each error exactly one line."""
        both = self.out + self.err
        assert "Traceback" not in both, both[-3000:]
        assert "\x1b" not in both, "a raw escape code reached the terminal"


_WRAPPER = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "sys.stderr.write(f'\\nPEAK_RSS_KB={peak}\\n')\n"
    "sys.exit(done.returncode)\n"
)


def run_child(args: list[str], env: dict[str, str] | None = None, timeout: float = 180) -> Ran:
    """`python <args>` in a child (the repository on its path), measured."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    full.update(PYTHONPATH=str(ROOT), **(env or {}))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, sys.executable, *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    seconds = time.monotonic() - started
    err, _, peak = done.stderr.rpartition("PEAK_RSS_KB=")
    return Ran(done.returncode, done.stdout, err.rstrip("\n"), seconds, int(peak) / 1024)
