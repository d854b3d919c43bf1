"""The rich implementation of harness.progress.Progress: done/total, ETA, elapsed and a live note
(e.g. the decode tokens/s of the last sample), on the given (stderr) console; a fleet run adds one line
per device (done/total, tok/s, state) under the overall bar."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness import safetext
from harness.cli.console import text


class RichProgress:
    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: Any = None
        self._devices: dict[str, Any] = {}

    def start(self, total: int, description: str, done: int = 0) -> None:
        self.stop()
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(),
                                  TextColumn("{task.fields[note]}"), console=self.console, transient=False)
        self._progress.start()
        self._task = self._progress.add_task(escape(safetext.terminal(description)), total=total, completed=done, note="")

    def advance(self, n: int = 1, note: str | None = None) -> None:
        if self._progress is not None:
            if note is None:
                self._progress.update(self._task, advance=n)
            else:
                self._progress.update(self._task, advance=n, note=escape(safetext.terminal(note)))

    def message(self, note: str) -> None:
        console = self._progress.console if self._progress is not None else self.console
        console.print(text(note, style="dim"))

    def device(self, name: str, done: int, total: int, state: str, decode_tps: float | None = None) -> None:
        if self._progress is None:
            return
        note = escape(safetext.terminal(f"{decode_tps:.1f} tok/s, {state}" if decode_tps else state))
        task = self._devices.get(name)
        if task is None:
            self._devices[name] = self._progress.add_task(escape(safetext.terminal(f"  {name}")), total=total, completed=done, note=note)
        else:
            self._progress.update(task, total=total, completed=done, note=note)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._devices = {}
