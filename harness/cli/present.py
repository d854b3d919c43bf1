"""Presentation several commands share: lines they print the same way (a command module never imports another;
the leaderboard table is harness.cli.tables)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from harness.cli.console import text

if TYPE_CHECKING:
    from harness.api import JudgeResult


def print_judge_line(s: JudgeResult, console: Console) -> None:
    """One line per judge, as `harness run` prints after judging."""
    parts: list[tuple[str, str]] = [(f"{s.n_requested} new", ""), (f"{s.n_cached_store + s.n_cached_disk} cached", "")]
    if s.n_failed:
        parts.append((f"{s.n_failed} failed", "red"))
    if s.n_unparseable:
        parts.append((f"{s.n_unparseable} unparseable", "yellow"))
    if s.s_per_judgment is not None:
        parts.append((f"{s.s_per_judgment:.3f} s/output", ""))
    if s.model_load_s is not None:
        parts.append((f"model load {s.model_load_s:.1f} s", ""))
    line = text("judged", "bold") + text(f" {s.judge}: ")
    for i, part in enumerate(parts):
        line.append(", " if i else "")
        line.append(*part)
    line.append(f" ({s.elapsed_s:.1f} s)")
    console.print(line)
