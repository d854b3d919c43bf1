"""The judges of the catalogs and the judging modes, as `harness judge --list` and its options show them.

Judging itself (`judge`, the batch files, judge cards, calibration) is in harness.api._core.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.progress import Progress


@dataclass(frozen=True)
class JudgeSummary:
    name: str
    kind: str  # the judge backend (e.g. llama, openai, refusal)
    mode: str  # what it is asked (e.g. score, rank, refusal)
    model: str  # its model name, else its model file, else "-"
    description: str


def list_judges() -> list[JudgeSummary]:
    """Every judge of the catalogs (shipped and user)."""
    from harness.judging.config import list_judges as catalog_judges

    return [JudgeSummary(str(j.name), str(j.kind), str(j.mode), str(j.model_name() or "-"),
                         str(j.description)) for j in catalog_judges()]


def judge_modes() -> list[str]:
    """The judging modes a judge's `mode` may be overridden with."""
    from harness.judging.modes import mode_names

    return mode_names()


@dataclass(frozen=True)
class ProbeFit:
    """A fitted probe judge: its out-of-fold report (cards beside the controls, the transfer table) and where its
    entry and weights were written."""

    report: Any  # harness.probe_fit.FitReport
    written: Any  # harness.probe_fit.WrittenProbe


def fit_probe(base: str, sets: list[str], task: str, name: str, *, folds: int = 5, seed: int = 0,
              catalog_dir: str | Path | None = None, progress: Progress | None = None) -> ProbeFit:
    """`harness judge fit`: fit a probe judge on a base model's hidden states from human-labelled sets, card it out
    of fold (grouped by prompt, every choice nested) and write its entry into the user catalog (or `catalog_dir`).
    `sets` are FORMAT:PATH specs; `store:PATH` is a results store's own outputs that people labelled."""
    from harness.errors import UsageError
    from harness.probe_fit import fit_and_write

    if not sets:
        raise UsageError("harness judge fit needs --set FORMAT:PATH (one or more human-labelled sets)")
    folder = Path(catalog_dir).expanduser() if catalog_dir else None
    report, written = fit_and_write(base, sets, task, name, folds=folds, seed=seed, folder=folder, progress=progress)
    return ProbeFit(report, written)
