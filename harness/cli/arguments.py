"""Argument values several commands parse the same way (a command module never imports another)."""

from __future__ import annotations

from harness import numbers
from harness.errors import UsageError


def parse_groups(text: str) -> set[int]:
    """`--reverse-groups` '10' or 'group 3, 10' -> {3, 10} (the study's labelling groups)."""
    groups = set()
    for part in (t.strip() for t in text.split(",")):
        if not part:
            continue
        digits = part.lower().removeprefix("group").strip(" -_")
        try:
            if not digits.isdigit():
                raise ValueError(digits)
            groups.add(numbers.parse_int(digits))
        except ValueError:
            raise UsageError(f"--reverse-groups {numbers.describe(text)!r}: give group numbers separated by commas, "
                             "e.g. --reverse-groups 10") from None
    return groups
