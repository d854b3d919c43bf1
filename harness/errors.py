"""Errors a user can act on, the exit codes they map to, and secrets kept out of every error's text."""

from __future__ import annotations

import re
from collections.abc import Iterable

NONE_PASS_EXIT = 3  # `harness leaderboard` with limits that no variant meets (a CI gate; 1 and 2 mean errors)


class HarnessError(Exception):
    """A failure that is not the user's input (exit code 1)."""

    exit_code = 1


class UsageError(HarnessError):
    """Bad input or usage: the message names the problem and the fix (exit code 2)."""

    exit_code = 2


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """" (did you mean 'Q4_K_M'?)" for the known name closest to a misspelt one (case ignored), else ""."""
    import difflib

    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""


class MissingExtraError(UsageError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed: "
            f"pip install 'harness[{extra}]'"
        )


def require(module: str, extra: str, purpose: str):  # type: ignore[no-untyped-def]
    """Import an optional dependency or raise a MissingExtraError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module.split(".")[0], extra, purpose) from exc


# Text that looks like a credential: an Authorization header's value, an OpenAI-style or Hugging Face key.
_CREDENTIAL = re.compile(
    r"(?i)(\bbearer\s+|\bauthorization[\"']?\s*[:=]\s*[\"']?(?!bearer\b))[^\s\"'`,;()\[\]{}<>]{6,}"
    r"|\bsk-[A-Za-z0-9_\-]{8,}|\bhf_[A-Za-z0-9]{16,}")
REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str | None] = (), *, patterns: bool = True) -> str:
    """Text from outside (an endpoint's error body, a library's message) with the given secrets, and (with
    `patterns`) anything that looks like a bearer token or API key, replaced by [redacted]: an echoed key is never
    stored or printed."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _CREDENTIAL.sub(lambda m: (m.group(1) or "") + REDACTED, text) if patterns else text
