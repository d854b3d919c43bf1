"""The judges of the catalogs and the judging modes, as `harness judge --list` and its options show them.

Judging itself (`judge`, the batch files, judge cards, calibration) is in harness.api._core.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    return [JudgeSummary(str(j.name), str(j.kind), str(j.mode), str(j.model or (j.model_path or "-")),
                         str(j.description)) for j in catalog_judges()]


def judge_modes() -> list[str]:
    """The judging modes a judge's `mode` may be overridden with."""
    from harness.judging.modes import mode_names

    return mode_names()
