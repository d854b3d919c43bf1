"""The one progress protocol: what long-running work (generating, deriving, judging) reports.

Domain code never prints; it calls a `Progress`. The CLI passes its rich implementation
(harness.cli.progress), the Python API passes `NoProgress()` unless told otherwise.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, total: int, description: str, done: int = 0) -> None:
        """A task of `total` steps begins, `done` of them already complete (resumed or cached)."""

    def advance(self, n: int = 1, note: str | None = None) -> None:
        """`n` more steps are complete; `note` is a short live figure (e.g. 'Q4_1 87 tok/s')."""

    def message(self, text: str) -> None:
        """A line worth showing (a model being loaded or derived)."""

    def stop(self) -> None:
        """The task ended (finished, failed or interrupted)."""


class NoProgress:
    """Reports nothing."""

    def start(self, total: int, description: str, done: int = 0) -> None:
        pass

    def advance(self, n: int = 1, note: str | None = None) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass
