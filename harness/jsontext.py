"""Parsing JSON that comes from outside (imported files, judge answers, shards, stores, manifests): a document
nested too deeply for Python's parser, holding a number out of range (`harness.numbers`: a whole number of more
than 19 digits, a real number beyond a double, NaN or Infinity) or a lone surrogate (`"\\ud800"`, no character),
is a malformed document (json.JSONDecodeError), not a crash (RecursionError, ValueError, UnicodeEncodeError) or
an infinity stored for a report to trip over.

JSON Lines are split on "\n" only (`jsonl_lines`): str.splitlines also splits on U+2028, U+2029, U+0085 and other
separators that JSON allows raw inside a string, so a prompt holding one would be cut in two."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from harness import numbers

MAX_DEPTH_HINT = "nested too deeply"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _NotText(ValueError):
    pass


def decoder(object_pairs_hook: Any = None) -> json.JSONDecoder:
    """A bounded decoder (for raw_decode), with an optional object_pairs_hook (e.g. one refusing duplicate keys)."""
    return json.JSONDecoder(parse_int=numbers.parse_int, parse_float=numbers.parse_float,
                            parse_constant=numbers.parse_json_constant, object_pairs_hook=object_pairs_hook)


_DECODER = decoder()


def loads(text: str) -> Any:
    """json.loads with the bounded decoder; RecursionError, numbers out of range and lone surrogates reported
    as json.JSONDecodeError."""
    return _guarded(lambda: _DECODER.decode(text), text, 0)


def raw_decode(decoder: json.JSONDecoder, text: str, index: int) -> tuple[Any, int]:
    """JSONDecoder.raw_decode, with RecursionError, numbers out of range and lone surrogates reported as
    json.JSONDecodeError."""
    if type(decoder) is json.JSONDecoder and decoder.parse_int in (None, int):  # json's own: bound its numbers
        decoder = _DECODER
    return _guarded(lambda: decoder.raw_decode(text, index), text, index)  # type: ignore[no-any-return]


def _guarded(parse: Callable[[], Any], text: str, index: int) -> Any:
    try:
        value = parse()
        if _SURROGATE_ESCAPE.search(text) or _SURROGATE.search(text):
            _no_surrogates(value)
        return value
    except RecursionError:
        raise json.JSONDecodeError(MAX_DEPTH_HINT, text[:100], index) from None
    except (numbers.OutOfRange, _NotText) as exc:
        raise json.JSONDecodeError(str(exc), text[:100], index) from None


def _no_surrogates(value: Any) -> None:
    """'\\ud800' without its pair is valid JSON but no text: it cannot be stored, hashed or written as UTF-8."""
    if isinstance(value, str):
        m = _SURROGATE.search(value)
        if m:
            raise _NotText(f"a lone surrogate ({ascii(m.group())[1:-1]}) is not a character")
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_surrogates(k)
            _no_surrogates(v)
    elif isinstance(value, list):
        for v in value:
            _no_surrogates(v)


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number from 1, line) of JSON Lines text, split on "\n" only (a trailing "\r" dropped)."""
    for n, line in enumerate(text.split("\n"), start=1):
        yield n, line[:-1] if line.endswith("\r") else line


def jsonl_objects(text: str, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line of JSON Lines text; UsageError naming the line that is not
    JSON or not an object."""
    from harness.errors import UsageError

    for n, line in jsonl_lines(text):
        if not line.strip():
            continue
        try:
            d = loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}:{n}: not valid JSON ({exc.msg}): one JSON object per line") from exc
        if not isinstance(d, dict):
            raise UsageError(f"{where}:{n}: expected a JSON object, got {type(d).__name__}")
        yield n, d
