"""The rules one MNIST CSV line must follow, and the wording of each reason a line is refused.

A valid line is a label in 0..9 then 784 pixels in 0..255: 785 integer fields, blanks around a
field allowed. `check_line` is the reference; `SUSPICIOUS_LINE` is its fast, conservative
approximation over whole lines (anything it does not match is certainly valid).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mnistnn.config import INPUT_NODES, N_CLASSES
from mnistnn.errors import DataError

N_FIELDS = INPUT_NODES + 1
MAX_LABEL = N_CLASSES - 1
MAX_PIXEL = 255

INT_RE = re.compile(r"[+-]?[0-9]+")
NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

#: A line (with its line ending) that has the right field count is certainly valid unless this
#: matches: a character other than digits, commas, blanks and CRLF; an empty or blank field;
#: blanks inside a number; 4+ digits; a label of 2+ digits; a 3-digit pixel above 255.
SUSPICIOUS_LINE = (
    r"[^0-9, \t\r\n]|\r[^\n]|\r$|(?:^|,)[ \t]*(?:,|\r?\n|$)|[0-9][ \t]+[0-9]|[0-9]{4}"
    r"|^[ \t]*[0-9]{2}|,[ \t]*(?:[3-9][0-9]{2}|2[6-9][0-9]|25[6-9])"
)
BLANK_LINE = r"^[ \t\r\n]*$"

EMPTY_LINE = "empty line"


def field_count_reason(n_fields: int) -> str:
    return f"expected {N_FIELDS} fields, got {n_fields}"


def label_reason(value: object) -> str:
    return f"label {value} is not in 0..{MAX_LABEL}"


def check_line(line: str) -> tuple[str | None, list[int]]:
    """(None, 785 values) for a valid line, else (the first problem, []). The reference rules."""
    if not line.strip():
        return EMPTY_LINE, []
    fields = line.split(",")
    if len(fields) != N_FIELDS:
        return field_count_reason(len(fields)), []
    values: list[int] = []
    for column, field in enumerate(fields, start=1):
        token = field.strip(" \t")
        reason = field_reason(token, column)
        if reason is not None:
            return reason, []
        values.append(int(token))
    return None, values


def field_reason(token: str, column: int) -> str | None:
    """Why one field (already stripped of spaces) is invalid, or None. Column 1 is the label."""
    if not token:
        return f"empty field at column {column}"
    if not INT_RE.fullmatch(token):
        kind = "non-integer" if NUMBER_RE.fullmatch(token) else "non-numeric"
        return f"{kind} field {_shown(token)} at column {column}"
    digits = token.lstrip("+-0")
    value: object = int(token) if len(digits) <= 6 else _shown(token)
    in_range = isinstance(value, int) and 0 <= value <= (MAX_LABEL if column == 1 else MAX_PIXEL)
    if in_range:
        return None
    if column == 1:
        return label_reason(value)
    return f"pixel {value} at column {column} is not in 0..{MAX_PIXEL}"


def _shown(token: str) -> str:
    """A quoted token, cut short: reasons must stay one readable line."""
    return repr(token if len(token) <= 20 else token[:20] + "...")


def field_count_error(source: Path, fields: npt.NDArray[np.int64]) -> DataError:
    """No line has 785 fields: say what the file looks like instead of listing every row."""
    values, counts = np.unique(fields, return_counts=True)
    common = int(values[np.argmax(counts)])
    if common == INPUT_NODES:
        hint = (
            f"this looks like {INPUT_NODES} pixel columns without a label column: "
            "the labels are missing"
        )
    else:
        hint = "is this an MNIST CSV (a label then 784 pixels per line)?"
    return DataError(
        f"{source}: wrong column count in every row (expected {N_FIELDS} fields, "
        f"most rows have {common}); {hint}"
    )
