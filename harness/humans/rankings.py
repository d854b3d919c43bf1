"""Parse messy human ranking strings ("3,2,1", "N/A,1,2", "[2, N/A, 1]", "1,2,3,", "NA") into rank codes.

Pure functions. The result follows the ratings contract: one code per output, 0 = not harmful
(N/A), 1..h = least..most harmful among the h harmful outputs, renumbered densely from 1
("N/A,3,2" -> 0,2,1; "N/A,3,N/A" -> 0,1,0). With `reverse=True` the raw scale is 1 = most harmful
(the study's Group 10). Tied harmful ranks ("2,2,1") are unparseable, as in the study's own
preprocessing (a tie does not say which output is more harmful), unless `allow_ties` (harness's own
labelling protocol, where identical or equally harmful outputs share a rank): "2,2,1" -> 2,2,1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness import numbers

NA_TOKENS = {"N/A", "NA", "N\\A", "N.A.", "N/AA", "N/A.", "NONE", "-", "NOTHARMFUL", "NOT HARMFUL"}

# Names of the repairs counted in import reports.
REPAIR_BRACKETS = "brackets removed"
REPAIR_QUOTES = "quotes removed"
REPAIR_TRAILING_COMMA = "trailing comma removed"
REPAIR_NA_SPELLING = "N/A spelled differently (e.g. NA) read as N/A"
REPAIR_ZERO_NA = "0 read as N/A"
REPAIR_DENSE = "harmful ranks renumbered densely from 1"
REPAIR_REVERSED = "reverse scale (1 = most harmful) turned around"


@dataclass
class ParsedRanking:
    """Codes per output (None when unparseable), the repairs applied, and the error if any."""

    codes: list[int] | None
    repairs: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.codes is not None


def parse_ranking(text: object, n_outputs: int, *, reverse: bool = False, zero_is_na: bool = True,
                  count_zero_as_repair: bool = True, allow_ties: bool = False) -> ParsedRanking:
    """Parse one ranking string for `n_outputs` outputs (see the module docstring)."""
    if text is None or (isinstance(text, float) and text != text):
        return ParsedRanking(None, error="empty ranking")
    s = str(text).strip()
    if not s:
        return ParsedRanking(None, error="empty ranking")
    repairs: list[str] = []
    if s[0] in "\"'" and s[-1] == s[0] and len(s) >= 2:
        s = s[1:-1].strip()
        repairs.append(REPAIR_QUOTES)
    if s.startswith("[") or s.startswith("(") or s.endswith("]") or s.endswith(")"):
        s = s.strip("[]() ")
        repairs.append(REPAIR_BRACKETS)
    if s.endswith(","):
        s = s.rstrip(", ")
        repairs.append(REPAIR_TRAILING_COMMA)
    tokens = [t.strip() for t in re.split(r"[,;]", s)]
    if len(tokens) == 1 and len(s.split()) == n_outputs:
        tokens = s.split()  # "3 2 1"
    if any(t == "" for t in tokens):
        return ParsedRanking(None, repairs, f"empty position in ranking {str(text).strip()!r}")
    if len(tokens) != n_outputs:
        return ParsedRanking(None, repairs,
                             f"{n_outputs} ranks expected, got {len(tokens)} in {str(text).strip()!r}")
    raw: list[int | None] = []
    for t in tokens:
        up = re.sub(r"\s+", "", t.upper().strip("\"'"))
        if up == "N/A":
            raw.append(None)
        elif up in NA_TOKENS or up.replace(" ", "") in NA_TOKENS:
            raw.append(None)
            if REPAIR_NA_SPELLING not in repairs:
                repairs.append(REPAIR_NA_SPELLING)
        elif up == "0" and zero_is_na:
            raw.append(None)
            if count_zero_as_repair and REPAIR_ZERO_NA not in repairs:
                repairs.append(REPAIR_ZERO_NA)
        elif re.fullmatch(r"\d+", up):
            try:
                value = numbers.parse_int(up)
            except numbers.OutOfRange:
                value = 0
            if not 1 <= value <= n_outputs:
                return ParsedRanking(None, repairs, f"rank {numbers.describe(up)} outside 1..{n_outputs} in "
                                                    f"{str(text).strip()[:60]!r}")
            raw.append(value)
        else:
            return ParsedRanking(None, repairs, f"unreadable rank {t!r} in {str(text).strip()!r}")
    harmful = [r for r in raw if r is not None]
    if len(set(harmful)) != len(harmful) and not allow_ties:
        return ParsedRanking(None, repairs, f"tied ranks in {str(text).strip()!r} (no order between them)")
    order = sorted(set(harmful), reverse=reverse)  # least harmful first
    dense = {rank: i + 1 for i, rank in enumerate(order)}
    codes = [0 if r is None else dense[r] for r in raw]
    if reverse and len(harmful) >= 2:
        repairs.append(REPAIR_REVERSED)
    if sorted(set(harmful)) != list(range(1, len(set(harmful)) + 1)):
        repairs.append(REPAIR_DENSE)
    return ParsedRanking(codes, repairs)
