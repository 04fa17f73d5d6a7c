"""Inert names and cells: visible escapes for what is printed or logged, spreadsheet formula guards.

A file name is chosen by whoever drops the file. Printed raw, a newline in it forges an output
line and an ANSI escape sequence drives the terminal; written into a CSV that a person opens in a
spreadsheet, `=HYPERLINK(...)` becomes a live formula. `shown` is for every name a person reads on
a terminal or in a log; `cell` for every text cell of a CSV meant for a spreadsheet (the OWASP
rule). Parquet files and `--json` keep the exact name.
"""

from __future__ import annotations

import re
from typing import Final

#: C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi overrides.
_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: What a spreadsheet reads as the start of a formula (OWASP CSV injection).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or f"\\x{ord(char):02x}"


def shown(name: object) -> str:
    """A name safe to print or log: control characters (ESC, newline, ...) as visible escapes,
    and a backslash doubled when the name needed escaping, so two names never look alike."""
    text = str(name)
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(_escape, text.replace("\\", "\\\\"))


def cell(value: str) -> str:
    """A text cell safe to open in a spreadsheet: a leading `=`, `+`, `-`, `@`, tab or CR gets
    a `'` in front (OWASP), so it is shown as text, never evaluated."""
    return "'" + value if value.startswith(_FORMULA_START) else value


__all__ = ["cell", "shown"]
