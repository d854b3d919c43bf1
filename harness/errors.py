"""Errors a user can act on, and the exit codes they map to."""

from __future__ import annotations


class HarnessError(Exception):
    """A failure that is not the user's input (exit code 1)."""

    exit_code = 1


class UsageError(HarnessError):
    """Bad input or usage: the message names the problem and the fix (exit code 2)."""

    exit_code = 2


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
