"""Reads TOML catalog files with errors that name the file and the fix; numbers through the one bounded parser
(`harness.numbers`: whole numbers within 64 bits, finite reals)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness import numbers
from harness.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(path: Path) -> dict[str, Any]:
    from harness.infiles import refuse_special

    refuse_special(path, "TOML file")  # before opening: a FIFO would block
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return _checked(tomllib.loads(raw.decode("utf-8"), parse_float=numbers.parse_float))
    except numbers.OutOfRange as exc:
        raise UsageError(f"{path}: {exc}: write a number in range") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from exc
    except (tomllib.TOMLDecodeError, ValueError) as exc:  # ValueError: an integer of over 4,300 digits
        raise UsageError(f"{path} is not valid TOML ({str(exc)[:200]}): fix the syntax") from None


def _checked(value: Any) -> Any:
    """The document, every whole number in it checked against numbers' range."""
    if isinstance(value, dict):
        for v in value.values():
            _checked(v)
    elif isinstance(value, list):
        for v in value:
            _checked(v)
    elif isinstance(value, int) and not isinstance(value, bool):
        numbers.check_int(value)
    return value
