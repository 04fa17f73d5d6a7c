"""One small error hierarchy: every message names the file, line or field and says what to do."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (white space folded), or its type's name if empty:
    for messages that quote another error (a refused input, a failures-file row)."""
    return " ".join(str(exc).split()) or type(exc).__name__


class MnistnnError(Exception):
    """Base class for the errors mnistnn raises on purpose (the CLI prints them as one line)."""


class DataError(MnistnnError):
    """A data file (CSV, Parquet, image) is missing, unreadable or fails validation."""


class CheckpointError(MnistnnError):
    """A checkpoint or weights file is missing, corrupt or does not match its metadata."""


class RegistryError(MnistnnError):
    """The model registry is corrupt, locked for too long, or asked for an unknown version."""


class ConfigError(MnistnnError, ValueError):
    """A configuration value is invalid; a ValueError so that callers may catch either."""


class StorageError(MnistnnError):
    """A storage operation failed for a reason retrying will not fix (the message names the URL)."""


class NotFound(StorageError, FileNotFoundError):
    """The key does not exist; a FileNotFoundError so existing `except FileNotFoundError` works."""


class StorageUnavailable(StorageError, OSError):
    """The storage could not be reached or answered 5xx/throttling: an OSError, so retried."""
