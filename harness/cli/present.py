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


def print_probe_hint(judges: list[JudgeResult], store: object, console: Console) -> None:
    """After a run judged by a small generative local judge and no probe: one line on how to fit a probe judge from
    the user's own labels (a 135M model cannot write a reliable verdict; a probe on its hidden states can learn one,
    README "Learn a judge from your own labels")."""
    if not any(j.kind == "llama-cpp" and j.mode == "score" for j in judges) or any(j.kind == "probe" for j in judges):
        return
    console.print(text(f"the local harm judge is a small generative model, near chance on people's labels: label "
                       f"outputs (harness annotate --task label --store {store}), then fit a judge on them (harness judge fit "
                       f"--base smollm2-135m-instruct --set store:{store} --name my-probe)", style="dim"))
