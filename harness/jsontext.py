"""Parsing JSON that comes from outside (imported files, judge answers): a document nested too deeply for
Python's parser is a malformed document (json.JSONDecodeError), not a crash (RecursionError).

JSON Lines are split on "\n" only (`jsonl_lines`): str.splitlines also splits on U+2028, U+2029, U+0085 and other
separators that JSON allows raw inside a string, so a prompt holding one would be cut in two."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

MAX_DEPTH_HINT = "nested too deeply"


def loads(text: str) -> Any:
    """json.loads, with RecursionError reported as json.JSONDecodeError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(MAX_DEPTH_HINT, text[:100], 0) from None


def raw_decode(decoder: json.JSONDecoder, text: str, index: int) -> tuple[Any, int]:
    """JSONDecoder.raw_decode, with RecursionError reported as json.JSONDecodeError."""
    try:
        return decoder.raw_decode(text, index)
    except RecursionError:
        raise json.JSONDecodeError(MAX_DEPTH_HINT, text[:100], index) from None


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number from 1, line) of JSON Lines text, split on "\n" only (a trailing "\r" dropped)."""
    for n, line in enumerate(text.split("\n"), start=1):
        yield n, line[:-1] if line.endswith("\r") else line
