"""The one progress protocol: what long-running work (generating, deriving, judging) reports.

Domain code never prints; it calls a `Progress`. The CLI passes its rich implementation
(harness.cli.progress), the Python API passes `NoProgress()` unless told otherwise. A fleet run also
reports each device's line (done/total, decode tok/s, state) through `report_device`, which a Progress
shows when it has a `device` method (`DeviceProgress`) and any other simply does not.
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


class DeviceProgress(Progress, Protocol):
    def device(self, name: str, done: int, total: int, state: str, decode_tps: float | None = None) -> None:
        """One device of a fleet run: `done` of `total` samples, the last decode tok/s, its state
        (waiting | running | done | missing | failed)."""


def report_device(progress: Progress, name: str, done: int, total: int, state: str,
                  decode_tps: float | None = None) -> None:
    """A device's line, for a Progress that shows devices (a plain Progress gets the overall bar only)."""
    device = getattr(progress, "device", None)
    if callable(device):
        device(name, done, total, state, decode_tps)


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

    def device(self, name: str, done: int, total: int, state: str, decode_tps: float | None = None) -> None:
        pass
