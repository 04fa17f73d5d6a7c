"""The scoring inbox: find its inputs, identify each by content; what reading one yields.

An inbox (`DataPaths().unlabelled`, i.e. `data/unlabelled/`) holds, at its top level:

    *.csv, *.csv.gz     Kaggle-style pixel CSVs: 784 columns, header pixel0..pixel783 or none
                        (gzip recognised by content)
    *.parquet           784 integer pixel columns (nothing else)
    a sub-folder        its image files (`IMAGE_SUFFIXES`, not recursive): one input per folder
    image files         the images lying directly in the inbox together form one input, `.`

Names starting with `.` or `_`, or ending `.part` / `.tmp` (a writer's temporary files) are
ignored, and so is a local file modified within the settle time (`discover`); a symbolic link,
FIFO, device or socket is skipped with one line and never opened; any other file is skipped
with a reason. On S3 an object is whole once written, so it is ready at once.

Each input is identified by the sha256 of its bytes (a folder: of its
images' names and contents), so a renamed copy is recognised and a changed file is new.

The inbox may be an `s3://` prefix: its objects are listed by the same rules (a "sub-folder" is
the keys that share one more `/`-part) and each input is downloaded once into the per-machine
cache, before it is hashed and read (`localise`).

Reading an input (`readers.read_chunks`) yields `Chunk`s of rows, each listing the rows that
failed (`RowFailure`); an input that cannot be scored at all raises `InputRefused`.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal

from mnistnn.core import locations
from mnistnn.core.files import sha256_file
from mnistnn.data.inbox import DEFAULT_SETTLE_SECONDS, IGNORED_SUFFIXES, check_settle_seconds
from mnistnn.data.text import file_kind
from mnistnn.errors import DataError, one_line
from mnistnn.inert import shown
from mnistnn.limits import DECODED_BYTES, LimitExceeded
from mnistnn.predict.image import IMAGE_SUFFIXES
from mnistnn.types import IntArray, PixelArray

Kind = Literal["csv", "parquet", "images"]

#: The name of the input made of the images lying directly in the inbox.
LOOSE_IMAGES: Final = "."
#: Sets the default settle time of a local scoring inbox (seconds).
SETTLE_ENV: Final = "MNISTNN_SETTLE_SECONDS"


class InputRefused(DataError):
    """An input that cannot be scored at all (labelled, unreadable, empty); one line, names it."""


@dataclass(frozen=True)
class InboxInput:
    """One input of the inbox: a CSV, a Parquet file, or a folder of images."""

    name: str
    path: str
    kind: Kind
    size: int
    members: tuple[str, ...] = ()

    def member_name(self, member: str) -> str:
        """An image's source name: relative to the inbox (`folder/a.png`, or `a.png`)."""
        base = Path(member).name
        return base if self.name == LOOSE_IMAGES else f"{self.name}/{base}"


@dataclass(frozen=True)
class Inbox:
    """What `discover` found: the inputs (sorted by name) and the skipped entries with why."""

    root: str
    inputs: tuple[InboxInput, ...]
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class RowFailure:
    """A row or image that could not be scored: its source, CSV/Parquet row (or None), why."""

    source: str
    row: int | None
    reason: str


@dataclass
class Chunk:
    """Rows ready to score: pixels, where they came from, the rows that failed meanwhile.

    `rows` is set for CSV and Parquet inputs (the source is the input's name); `sources` for
    images (one name per row, `rows` None). `done` is the fraction of the input read so far.
    """

    pixels: PixelArray
    rows: IntArray | None
    sources: list[str] | None
    failures: list[RowFailure] = field(default_factory=list)
    done: float = 0.0

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


# -- discovery -------------------------------------------------------------------------------
def discover(
    inbox: str | os.PathLike[str], settle_seconds: float | None = None, now: float | None = None
) -> Inbox:
    """The inputs of an inbox folder (see the module docstring); a missing folder is empty.

    Only regular files really in the folder are read: a symbolic link (even to a file inside),
    a FIFO, a device or a socket is skipped with one line, never opened. A local file modified
    within `settle_seconds` (default: $MNISTNN_SETTLE_SECONDS, else the labelled inbox's 5 s) is
    still being written and waits for the next run, as do names ending `.part` / `.tmp`.
    """
    if locations.is_url(inbox):
        return _discover_objects(str(inbox).rstrip("/"))
    root = Path(inbox)
    if not root.exists():
        return Inbox(str(root), ())
    if not root.is_dir():
        raise DataError(f"{shown(root)}: the scoring inbox must be a folder")
    settle = settle_default() if settle_seconds is None else check_settle_seconds(settle_seconds)
    clock = time.time() if now is None else now
    inputs: list[InboxInput] = []
    skipped: list[str] = []
    loose: list[Path] = []
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name.startswith((".", "_")) or name.endswith(IGNORED_SUFFIXES):
            continue
        why = _not_ready(entry, settle, clock)
        if why is not None:
            if why:
                skipped.append(f"{shown(name)}: {why}")
            continue
        lower = name.lower()
        if stat.S_ISDIR(entry.lstat().st_mode):
            images = _images_in(entry, skipped)
            size = sum(path.stat().st_size for path in images)
            inputs.append(InboxInput(name, str(entry), "images", size, tuple(map(str, images))))
        elif lower.endswith((".csv", ".csv.gz")):
            inputs.append(InboxInput(name, str(entry), "csv", entry.stat().st_size))
        elif lower.endswith(".parquet"):
            inputs.append(InboxInput(name, str(entry), "parquet", entry.stat().st_size))
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            loose.append(entry)
        else:
            skipped.append(
                f"{shown(name)}: not a .csv, .csv.gz, .parquet, image or folder of images"
            )
    if loose:
        size = sum(path.stat().st_size for path in loose)
        members = tuple(map(str, loose))
        inputs.append(InboxInput(LOOSE_IMAGES, str(root), "images", size, members))
    return Inbox(str(root), tuple(sorted(inputs, key=lambda item: item.name)), tuple(skipped))


def settle_default() -> float:
    """$MNISTNN_SETTLE_SECONDS when set, else the labelled inbox's default."""
    given = os.environ.get(SETTLE_ENV, "").strip()
    return check_settle_seconds(float(given)) if given else DEFAULT_SETTLE_SECONDS


def _not_ready(entry: Path, settle: float, now: float) -> str | None:
    """None for a settled regular file or a real folder; "" for one still being written
    (silent: it waits); else why the entry is refused (never followed, never opened)."""
    try:
        info = entry.lstat()
    except FileNotFoundError:
        return ""  # removed meanwhile
    if stat.S_ISDIR(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        return f"{file_kind(info.st_mode)}, not a regular file; refused (never read)"
    if info.st_size == 0 or now - info.st_mtime < settle:
        return ""
    return None


def _discover_objects(root: str) -> Inbox:
    """`discover` for an `s3://` inbox: the same rules over its keys."""
    store = locations.store_at(root)
    inputs: list[InboxInput] = []
    skipped: list[str] = []
    folders: dict[str, list[str]] = {}
    loose: list[str] = []
    for key in locations.list_folder(root):
        name, _, rest = key.partition("/")
        if name.startswith((".", "_")) or (not rest and name.endswith(IGNORED_SUFFIXES)):
            continue
        lower = name.lower()
        if rest:
            image = rest.rpartition("/")[2]
            if "/" not in rest and not image.startswith(".") and _is_image(image):
                folders.setdefault(name, []).append(key)
            else:
                folders.setdefault(name, [])
        elif lower.endswith((".csv", ".csv.gz")):
            inputs.append(InboxInput(name, f"{root}/{key}", "csv", store.size(key)))
        elif lower.endswith(".parquet"):
            inputs.append(InboxInput(name, f"{root}/{key}", "parquet", store.size(key)))
        elif _is_image(name):
            loose.append(key)
        else:
            skipped.append(
                f"{shown(name)}: not a .csv, .csv.gz, .parquet, image or folder of images"
            )
    for name, keys in folders.items():
        size = sum(store.size(key) for key in keys)
        members = tuple(f"{root}/{key}" for key in keys)
        inputs.append(InboxInput(name, f"{root}/{name}", "images", size, members))
    if loose:
        size = sum(store.size(key) for key in loose)
        members = tuple(f"{root}/{key}" for key in loose)
        inputs.append(InboxInput(LOOSE_IMAGES, root, "images", size, members))
    return Inbox(root, tuple(sorted(inputs, key=lambda item: item.name)), tuple(skipped))


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def localise(item: InboxInput) -> InboxInput:
    """The input with local files: an object (or each image of an object folder) downloaded
    into the per-machine cache under its own name; a local input as it is."""
    if not locations.is_url(item.path):
        return item
    if item.kind != "images" and item.size > DECODED_BYTES.value():  # never downloaded whole
        raise LimitExceeded(shown(item.name), DECODED_BYTES, f"{item.size:,} bytes stored")
    try:
        if item.kind != "images":
            return replace(item, path=str(locations.local_copy(item.path)))
        members = tuple(str(locations.local_copy(member)) for member in item.members)
    except FileNotFoundError:  # NotFound: removed since it was listed
        raise InputRefused(f"{shown(item.name)}: no longer in the inbox") from None
    return replace(item, members=members)


def _images_in(folder: Path, skipped: list[str] | None = None) -> list[Path]:
    """The folder's image files: regular files only (a link or a FIFO is skipped with why)."""
    images = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise InputRefused(f"{shown(folder.name)}: cannot list folder ({one_line(exc)})") from exc
    for entry in entries:
        if entry.suffix.lower() not in IMAGE_SUFFIXES or entry.name.startswith("."):
            continue
        try:
            mode = entry.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISREG(mode):
            images.append(entry)
        elif skipped is not None:
            skipped.append(
                f"{shown(folder.name)}/{shown(entry.name)}: {file_kind(mode)}, not a regular "
                "file; refused (never read)"
            )
    return images


def identify(item: InboxInput) -> str:
    """sha256 of the input's content; a folder's covers each image's name and bytes."""
    try:
        if item.kind != "images":
            return sha256_file(item.path)
        digest = hashlib.sha256(b"mnistnn image folder\n")
        for member in item.members:
            digest.update(f"{Path(member).name}\t{sha256_file(member)}\n".encode())
        return digest.hexdigest()
    except OSError as exc:
        raise InputRefused(f"{shown(item.name)}: cannot read ({one_line(exc)})") from exc


__all__ = [
    "LOOSE_IMAGES",
    "Chunk",
    "Inbox",
    "InboxInput",
    "InputRefused",
    "RowFailure",
    "discover",
    "identify",
    "localise",
]
