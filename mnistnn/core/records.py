"""One validator for JSON records read back from disk: typed fields, errors naming the source.

Registry files, checkpoint metadata and ingest summaries are all JSON objects written by this
program and read back later, possibly after a crash or a hand edit. Each field is checked as it
is read, and a bad one raises the caller's error class naming the file and the field.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, NoReturn, TypeGuard

import numpy as np

from mnistnn.errors import ConfigError, MnistnnError


def is_number(value: object) -> TypeGuard[numbers.Real]:
    """A finite real number (numpy scalars included, bools excluded)."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool | np.bool_)
        and math.isfinite(float(value))
    )


def check_fraction(value: object, name: str, high: float = 1.0) -> float:
    """`value` as a float when it is a finite number in 0..high; ConfigError naming `name`."""
    if not is_number(value) or not 0.0 <= float(value) <= high:
        raise ConfigError(f"{name} must be a number in 0..{high:g}, got {value!r}")
    return float(value)


class Fields:
    """Typed access to one JSON object; every failure raises `error` naming `source`."""

    def __init__(
        self,
        data: object,
        source: str | os.PathLike[str],
        error: type[MnistnnError] = MnistnnError,
        what: str = "a JSON object",
    ) -> None:
        self.source = os.fspath(source)
        self.error = error
        if not isinstance(data, dict):
            raise error(f"{self.source}: expected {what}, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def fail(self, key: str, expected: str) -> NoReturn:
        """Raise the error for a missing or wrongly typed field."""
        if key not in self.data:
            raise self.error(f"{self.source}: field {key!r} is missing")
        shown = repr(self.data[key])
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise self.error(f"{self.source}: field {key!r} must be {expected}, got {shown}")

    def string(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            self.fail(key, "a string")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            self.fail(key, "a string or null")
        return value

    def number(self, key: str) -> float:
        value = self.data.get(key)
        if not is_number(value):
            self.fail(key, "a finite number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self.data.get(key) is None else self.number(key)

    def integer(self, key: str, minimum: int = 0) -> int:
        value = self.data.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(key, f"an integer >= {minimum}")
        return value

    def boolean(self, key: str, default: bool | None = None) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, "true or false")
        return value

    def obj(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if not isinstance(value, dict):
            self.fail(key, "an object")
        return value

    def array(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if not isinstance(value, list):
            self.fail(key, "a list")
        return value
