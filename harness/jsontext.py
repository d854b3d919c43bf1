"""Parsing JSON that comes from outside (imported files, judge answers): a document nested too deeply for
Python's parser is a malformed document (json.JSONDecodeError), not a crash (RecursionError)."""

from __future__ import annotations

import json
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
