"""Numbers from outside (JSON documents, CSV cells, TOML strings, form fields, the command line): one bounded
parser. A whole number has at most 19 digits and fits SQLite's 64-bit integers; a real number is finite. Anything
else is `OutOfRange` (a ValueError) with a short description, never Python's 4,300-digit limit, an OverflowError or
an infinity that a later sum or a report trips over."""

from __future__ import annotations

import math

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_INT_DIGITS = 19
MAX_REAL_CHARS = 400  # longer than any double needs; a longer text is a number nobody wrote by hand


class OutOfRange(ValueError):
    """A number too large (or not finite) to be meant."""


def describe(text: str) -> str:
    """The number as an error can quote it: itself, or its length when it is long."""
    s = text.strip()
    return s if len(s) <= 24 else f"a {len(s):,}-character number ({s[:12]}...)"


def describe_int(value: int) -> str:
    """A whole number as an error can quote it (str() of a huge one would itself fail)."""
    return describe(str(value)) if value.bit_length() <= 64 else f"a {value.bit_length():,}-bit number"


def parse_int(text: str) -> int:
    """int(text) within SQLite's range; ValueError for a text that is not a whole number, OutOfRange when it is
    too large."""
    s = text.strip()
    if len(s.lstrip("+-").lstrip("0")) > MAX_INT_DIGITS:
        raise OutOfRange(f"{describe(s)} is out of range (at most {MAX_INT_DIGITS} digits)")
    return check_int(int(s))


def check_int(value: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise OutOfRange(f"{describe_int(value)} is out of range (at most {MAX_INT_DIGITS} digits)")
    return value


def parse_float(text: str) -> float:
    """float(text), finite; ValueError for a text that is not a number, OutOfRange for an infinity, a NaN or a
    number beyond a double's range."""
    s = text.strip()
    if len(s) > MAX_REAL_CHARS:
        raise OutOfRange(f"{describe(s)} is out of range")
    return check_float(float(s), s)


def check_float(value: float, text: str | None = None) -> float:
    if not math.isfinite(value):
        raise OutOfRange(f"{describe(text if text is not None else str(value))} is not a finite number")
    return value


def parse_json_constant(name: str) -> float:
    """JSON has no NaN or Infinity: Python's json reads them unless told not to."""
    raise OutOfRange(f"{name} is not a JSON number")
