"""A rich progress bar for the run engine: done/total, ETA and live decode tokens/s."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.engine import ProgressSink


class RichProgress(ProgressSink):
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[rate]}"),
            console=console,
            transient=False,
        )
        self.task: Any = None

    def start(self, total: int, done: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("generating", total=total, completed=done, rate="")

    def message(self, text: str) -> None:
        self.progress.console.print(f"[dim]{text}[/]")

    def advance(self, row: dict[str, Any]) -> None:
        tps = row.get("decode_tps")
        label = f"{row['model']}:{row['variant']}"
        rate = f"{label} {tps:.0f} tok/s" if tps else f"{label} (error)" if row.get("error") else label
        self.progress.update(self.task, advance=1, rate=rate)

    def stop(self) -> None:
        self.progress.stop()
