"""Parsing CSV text from outside (prompt files, third-party releases) without losing rows silently.

Python's csv module, when a quoted field is never closed, reads the rest of the file into that one field and
reports nothing: every later row is lost. `rows()` parses leniently (third-party files put stray quotes in
unquoted fields and text after a closing quote, and those are kept as written) but refuses the one case that
swallows data: a quote opened on some row and never closed. Fields may be as large as a file can hold (the
module's 128 KiB default would be reported as a quoting error).
"""

from __future__ import annotations

import csv
import io
import sys

from harness.errors import UsageError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def rows(text: str, where: str) -> list[tuple[int, list[str]]]:
    """[(line number where the record starts, its fields)] of a CSV text; UsageError on an unclosed quote."""
    out: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for record in reader:
            out.append((start, record))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise UsageError(f"{where}: line {start}: not readable as CSV ({exc}): check its quoting") from exc
    if out and _unclosed(text):
        line, fields = out[-1]
        raise UsageError(f"{where}: line {line}: a quoted field is never closed, so it swallows the rest of the file: "
                         "close the quote, or write a quote inside "
                         'a quoted field as ""')
    return out


def _unclosed(text: str) -> bool:
    """Whether a strict parse runs out of text inside a quoted field."""
    try:
        for _ in csv.reader(io.StringIO(text, newline=""), strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc) or "EOF" in str(exc)
    return False
