"""A rich progress bar for judging: done/total, ETA and elapsed, on the given (stderr) console."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RichJudgeProgress:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: Any = None

    def start(self, total: int, description: str) -> None:
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(),
                                 console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=n)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
