"""Read third-party CSV and JSONL files: encoding detection, binary detection, column checks.

Files are decoded by harness.encodings (UTF-8, UTF-16 with a BOM, mostly-UTF-8 with broken sequences
replaced, or the most plausible legacy code page such as Mac-Roman or Windows-1252); anything but clean
UTF-8 is reported as a repair naming the encoding chosen. A binary file, and a CSV without the expected
columns, are refused: both are UsageErrors naming the expected input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import jsontext
from harness.errors import UsageError


@dataclass
class TextFile:
    path: Path
    text: str
    encoding: str  # utf-8, utf-8-sig, utf-16, cp1252, mac_roman, latin-1 ...
    replaced: int = 0  # broken UTF-8 sequences replaced
    reason: str = ""
    repaired: int = 0  # lines of a legacy-encoded file that held UTF-8 (mojibake), repaired with ftfy

    @property
    def repaired_encoding(self) -> str | None:
        """The import report's repair (counted across files) for the decoding; None for clean UTF-8."""
        if self.encoding.startswith("utf-8") and not self.replaced:
            return None
        if self.replaced:
            return "file decoded as UTF-8 with broken sequences replaced by U+FFFD"
        return f"file decoded as {self.encoding} (not UTF-8)"

    @property
    def decoding_note(self) -> str | None:
        """Which file was decoded how, and why (for the import report's notes)."""
        if self.repaired_encoding is None:
            return None
        if self.replaced:
            return f"{self.path.name}: UTF-8 with {self.replaced} broken sequence(s) replaced by U+FFFD ({self.reason})"
        repair = f"; {self.repaired} line(s) held UTF-8 (mojibake such as 'it‚Äôs'), repaired with ftfy" \
            if self.repaired else ""
        return f"{self.path.name}: decoded as {self.encoding}, {self.reason}{repair}"


def read_text(path: Path, what: str) -> TextFile:
    """Decode a text file (gzip-compressed or not); UsageError for a missing, special, unreadable or binary file.
    `what` names the format."""
    from harness.encodings import decode_bytes
    from harness.infiles import read_bytes

    d = decode_bytes(read_bytes(path, f"a {what}"), str(path), what)
    return TextFile(path, d.text, d.encoding, d.replaced, d.reason, d.repaired)


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("\ufeff", "")).strip().casefold()


@dataclass
class CsvTable:
    file: TextFile
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (row number counting the header as row 1, values by header)

    def column(self, wanted: str) -> str | None:
        """The header spelled as in the file that matches `wanted` (case and spacing ignored)."""
        target = _norm(wanted)
        for h in self.header:
            if _norm(h) == target:
                return h
        return None


def read_csv(path: Path, what: str, required: Sequence[str] = ()) -> CsvTable:
    """Parse a CSV with a header row; UsageError when a required column is missing."""
    from harness.csvtext import rows as csv_rows

    tf = read_text(path, what)
    records = csv_rows(tf.text, str(path))
    if not records:
        raise UsageError(f"{path} is empty: pass a {what} file with a header row ({', '.join(required)})")
    header = [h.replace("\ufeff", "").strip() for h in records[0][1]]
    rows: list[tuple[int, dict[str, str]]] = []
    for i, (_, values) in enumerate(records[1:], start=2):
        if not values or all(not v.strip() for v in values):
            continue
        rows.append((i, {h: (values[j] if j < len(values) else "") for j, h in enumerate(header)}))
    table = CsvTable(tf, header, rows)
    missing = [c for c in required if table.column(c) is None]
    if missing:
        raise UsageError(
            f"{path} lacks the column(s) {', '.join(repr(c) for c in missing)} of a {what} file "
            f"(expected columns: {', '.join(required)}; found: {', '.join(header) or 'none'})")
    return table


def read_jsonl(path: Path, what: str) -> tuple[TextFile, list[tuple[int, Any]], list[tuple[int, str]]]:
    """JSON Lines: (file, [(line number, object)], [(line number, error)]) for lines that are not JSON objects."""
    tf = read_text(path, what)
    objects: list[tuple[int, Any]] = []
    bad: list[tuple[int, str]] = []
    for i, line in jsontext.jsonl_lines(tf.text):
        if not line.strip():
            continue
        try:
            obj = jsontext.loads(line)
        except json.JSONDecodeError as exc:
            bad.append((i, f"not JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict):
            bad.append((i, "not a JSON object"))
            continue
        objects.append((i, obj))
    if not objects and bad:
        raise UsageError(f"{path} has no JSON object on any line (line {bad[0][0]}: {bad[0][1]}): pass a {what} file")
    return tf, objects, bad
