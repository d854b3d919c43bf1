"""Parsing JSON that comes from outside (imported files, judge answers, batch results): whatever the document holds,
a bad one is a malformed document (json.JSONDecodeError), never a crash. Too deep a document (RecursionError), an
integer too long to convert (ValueError), and numbers that are not finite (NaN, Infinity, 1e999: Python's parser
takes them, JSON does not) are all malformed.

JSON Lines are split on "\n" only (`jsonl_lines`): str.splitlines also splits on U+2028, U+2029, U+0085 and other
separators that JSON allows raw inside a string, so a prompt holding one would be cut in two."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
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


def decoder(object_pairs_hook: Any = None) -> json.JSONDecoder:
    """A decoder with the bounds above (and, say, a hook that refuses duplicate keys)."""
    return json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant,
                            object_pairs_hook=object_pairs_hook)


_DECODER = decoder()


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


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number from 1, line) of JSON Lines text, split on "\n" only (a trailing "\r" dropped)."""
    for n, line in enumerate(text.split("\n"), start=1):
        yield n, line[:-1] if line.endswith("\r") else line
