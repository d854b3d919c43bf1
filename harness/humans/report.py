"""What an import read, wrote, repaired and rejected: returned by every importer and printed by the CLI."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_LISTED = 50  # rejections printed in full; the rest are counted (all are in the JSON report)
MAX_REASON_CHARS = 300  # a reason quoting a 5000-digit cell says so in a line, not in a screenful


@dataclass
class Rejection:
    file: str
    row: int  # row number in the file, the header being row 1 (JSONL: line number)
    reason: str
    stored_invalid: bool = False  # True: kept as invalid ratings (never counted as harmless)

    def text(self) -> str:
        kept = " (kept as invalid ratings)" if self.stored_invalid else ""
        return f"{self.file} row {self.row}: {self.reason}{kept}"


def not_used_note(rejected: Sequence[str], shown: int = 3) -> str:
    """One line saying how many of a set's rows an importer rejected, and which (the first `shown` in full): what
    a measurement over the set must say it left out."""
    more = f"; and {len(rejected) - shown} more" if len(rejected) > shown else ""
    return f"{len(rejected)} row(s) of the set not used: {'; '.join(rejected[:shown])}{more}"


@dataclass
class ImportReport:
    format: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    generations_built: int = 0
    ratings_built: int = 0
    invalid_ratings: int = 0
    generations_written: int = 0
    ratings_written: int = 0
    ratings_updated: int = 0  # stored answers replaced by a changed one (collected labels re-imported)
    repaired: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejection] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)  # rows read but not ratings, by why (e.g. skipped)

    def repair(self, what: str, n: int = 1) -> None:
        self.repaired[what] += n

    def decoded(self, file: Any) -> None:
        """Count a file's non-UTF-8 decoding as a repair and note which encoding was chosen and why."""
        if file.repaired_encoding:
            self.repair(file.repaired_encoding)
            self.notes.append(file.decoding_note)
        if file.repaired:
            self.repair("line(s) holding UTF-8 inside a legacy-encoded file (mojibake), repaired with ftfy",
                        file.repaired)

    def exclude(self, why: str, n: int = 1) -> None:
        if n:
            self.excluded[why] += n

    def reject(self, file: str, row: int, reason: str, stored_invalid: bool = False) -> None:
        if len(reason) > MAX_REASON_CHARS:
            reason = f"{reason[:MAX_REASON_CHARS]}... ({len(reason):,} characters)"
        self.rejected.append(Rejection(file, row, reason, stored_invalid))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "files": list(self.files),
            "rows_read": self.rows_read,
            "generations_built": self.generations_built,
            "ratings_built": self.ratings_built,
            "invalid_ratings": self.invalid_ratings,
            "generations_written": self.generations_written,
            "ratings_written": self.ratings_written,
            "ratings_updated": self.ratings_updated,
            "already_present": (self.ratings_built - self.ratings_written)
            + (self.generations_built - self.generations_written),
            "repaired": dict(sorted(self.repaired.items())),
            "rejected": [r.__dict__ for r in self.rejected],
            "excluded": dict(sorted(self.excluded.items())),
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        out = [
            f"import {self.format}: read {self.rows_read} rows from {len(self.files)} file(s)",
            f"  wrote {self.ratings_written} of {self.ratings_built} ratings ({self.invalid_ratings} invalid) "
            f"and {self.generations_written} of {self.generations_built} generations",
        ]
        if self.ratings_updated:
            out.append(f"  updated {self.ratings_updated} stored rating(s) whose answer changed")
        if self.ratings_built and not self.ratings_written and not self.generations_written \
                and not self.ratings_updated:
            out.append("  nothing new: every rating and generation was already in the store")
        elif self.ratings_written < self.ratings_built or self.generations_written < self.generations_built:
            out.append("  the rest were already in the store")
        if self.repaired:
            out.append("  repaired:")
            out.extend(f"    {n:>6}  {what}" for what, n in sorted(self.repaired.items()))
        else:
            out.append("  repaired: nothing")
        if self.excluded:
            out.append("  excluded (not ratings):")
            out.extend(f"    {n:>6}  {why}" for why, n in sorted(self.excluded.items()))
        out.append(f"  rejected: {len(self.rejected)} row(s)")
        out.extend(f"    {r.text()}" for r in self.rejected[:MAX_LISTED])
        if len(self.rejected) > MAX_LISTED:
            out.append(f"    ... and {len(self.rejected) - MAX_LISTED} more (see --json)")
        out.extend(f"  note: {n}" for n in self.notes)
        return out
