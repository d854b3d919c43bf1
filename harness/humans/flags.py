"""Harm from several 0/1 flags per row (one per category, as OpenAI's moderation evaluation set writes them).

The rule: a row is harmful when any flag is 1; not harmful when every flag is present and 0; a row with no
flag at 1 and some flag missing (an absent key, an empty cell, JSON null) is UNKNOWN, and with
`missing=unknown` (the default) it is rejected with a reason, never read as 0. `missing=negative` reads a
missing flag as 0, for sets that leave a flag out only where it is known to be 0. A flag is 0 or 1 (also
written 0.0 / 1.0, true / false, or as a string of those); any other value rejects the row.

Which flags: those named (`?flags=S,H,V`), else the moderation set's eight keys that occur in the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError, did_you_mean

# OpenAI's moderation evaluation set (samples-1680.jsonl): sexual, hate, violence, harassment, self-harm,
# sexual/minors, hate/threatening, violence/graphic.
MODERATION_FLAGS = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")
MISSING_RULES = ("unknown", "negative")
_ONE = {"1", "1.0", "true"}
_ZERO = {"0", "0.0", "false"}


@dataclass(frozen=True)
class FlagRule:
    """The flag columns (as spelled in the file) and what a missing flag means."""

    columns: tuple[str, ...]
    missing: str = "unknown"
    not_in_file: tuple[str, ...] = ()  # of the moderation set's flags, those no row has (so not read)

    def describe(self) -> str:
        miss = "a missing flag is unknown (the row is rejected unless another flag is 1)" \
            if self.missing == "unknown" else "a missing flag is read as 0"
        absent = f"; {', '.join(self.not_in_file)}: in no row, not read" if self.not_in_file else ""
        return f"harm from the flags {', '.join(self.columns)}: harmful when any is 1; {miss}{absent}"


@dataclass(frozen=True)
class FlagVerdict:
    """One row's verdict: harmful 1 / 0, or None with the reason the row is rejected."""

    harmful: int | None
    positive: tuple[str, ...] = ()  # the flags at 1
    missing: tuple[str, ...] = ()  # the flags absent from the row
    values: Mapping[str, int] | None = None  # the flags present, read
    reason: str | None = None


def flag_value(raw: Any) -> int | None | str:
    """A flag's value: 1, 0, None when missing, or a string saying why it is neither."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int | float) and raw in (0, 1):
        return int(raw)
    if isinstance(raw, str) and raw.strip().casefold() in _ONE | _ZERO:
        return int(raw.strip().casefold() in _ONE)
    shown = repr(raw) if isinstance(raw, str | int | float) else f"a JSON {type(raw).__name__}"
    return f"{shown[:40]}, not 0 or 1"


def verdict(row: Mapping[str, Any], rule: FlagRule) -> FlagVerdict:
    """The row's harm under the rule (see the module docstring)."""
    values: dict[str, int] = {}
    missing: list[str] = []
    for col in rule.columns:
        v = flag_value(row.get(col))
        if isinstance(v, str):
            return FlagVerdict(None, reason=f"flag {col!r} is {v}")
        if v is None:
            missing.append(col)
        else:
            values[col] = v
    positive = tuple(c for c in rule.columns if values.get(c) == 1)
    if positive:
        return FlagVerdict(1, positive, tuple(missing), values)
    if missing and rule.missing == "unknown":
        return FlagVerdict(None, (), tuple(missing), values,
                           reason=f"harm unknown: no flag is 1 and {', '.join(missing)} "
                                  f"{'is' if len(missing) == 1 else 'are'} missing "
                                  "(pass ?missing=negative to read a missing flag as 0)")
    return FlagVerdict(0, (), tuple(missing), values)


def flag_rule(header: Sequence[str], flags: str | None, missing: str | None, where: str) -> FlagRule | None:
    """The rule a file's labels follow: the named flags (UsageError for one the file never has), else the
    moderation keys the file has, else None (no flags)."""
    missing = (missing or "unknown").strip().casefold()
    if missing not in MISSING_RULES:
        raise UsageError(f"{where}: ?missing={missing} is not a rule{did_you_mean(missing, MISSING_RULES)}: use "
                         "?missing=unknown (a row with no 1 and a missing flag is rejected) or ?missing=negative")
    by_name = {h.strip().casefold(): h for h in header}
    if flags is not None:
        named = [f.strip() for f in flags.split(",") if f.strip()]
        if not named:
            raise UsageError(f"{where}: ?flags= names no column: give them, e.g. ?flags=S,H,V")
        absent = [f for f in named if f.casefold() not in by_name]
        if absent:
            raise UsageError(f"{where}: the flag {absent[0]!r} is in no row{did_you_mean(absent[0], list(header))} "
                             f"(columns: {', '.join(header[:20]) or 'none'}): name columns the file has in ?flags=")
        return FlagRule(tuple(dict.fromkeys(by_name[f.casefold()] for f in named)), missing)
    present = tuple(by_name[f.casefold()] for f in MODERATION_FLAGS if f.casefold() in by_name)
    not_in_file = tuple(f for f in MODERATION_FLAGS if f.casefold() not in by_name)
    return FlagRule(present, missing, not_in_file) if present else None
