"""Parsing JSON that comes from outside (imported files, judge answers, batch results): whatever the document holds,
a bad one is a malformed document (json.JSONDecodeError), never a crash. Too deep a document (RecursionError), an
integer too long to convert (ValueError), and numbers that are not finite (NaN, Infinity, 1e999: Python's parser
takes them, JSON does not) are all malformed."""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH_HINT = "nested too deeply"
MAX_INT_DIGITS = 4000  # below Python's own limit (4300), so the refusal is ours, with our message


class _BadNumber(ValueError):
    """A number no field of ours can hold (raised inside the parser, reported as json.JSONDecodeError)."""


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _BadNumber(f"an integer of {digits:,} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"the number {text[:40]} is out of range")
    return value


def _constant(name: str) -> float:
    raise _BadNumber(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)


def _malformed(exc: BaseException, text: str, index: int) -> json.JSONDecodeError:
    msg = MAX_DEPTH_HINT if isinstance(exc, RecursionError) else str(exc)
    return json.JSONDecodeError(msg, text[:100], index)


def loads(text: str) -> Any:
    """json.loads with the bounds above: anything malformed is json.JSONDecodeError."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError:
        raise
    except (RecursionError, _BadNumber) as exc:
        raise _malformed(exc, text, 0) from None


def raw_decode(decoder: json.JSONDecoder, text: str, index: int) -> tuple[Any, int]:
    """JSONDecoder.raw_decode (with the bounds above when `decoder` is json's default one)."""
    if type(decoder) is json.JSONDecoder and decoder.parse_int in (None, int):
        decoder = _DECODER
    try:
        return decoder.raw_decode(text, index)
    except json.JSONDecodeError:
        raise
    except (RecursionError, _BadNumber) as exc:
        raise _malformed(exc, text, index) from None
