"""A judge's own ratings summarised per model, variant and task: what `harness judge` prints after judging (harm,
refusal and pairwise counts and rates; invalid ratings excluded and counted)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from harness.rating_tasks import rating_task
from harness.records import Rating


@dataclass(frozen=True)
class JudgeRate:
    model: str
    variant: str
    task: str
    n: int
    valid: int
    invalid: int
    harmful: int | None = None  # harm tasks
    harm_rate: float | None = None
    refusal: int | None = None  # refusal task
    partial_refusal: int | None = None
    compliance: int | None = None
    refusal_rate: float | None = None
    mean_win_share: float | None = None  # pairwise task


def judge_rates(ratings: Iterable[Rating]) -> list[JudgeRate]:
    """One row per (model, variant, task) of a judge's ratings; invalid ratings excluded and counted."""
    groups: dict[tuple[str, str, str], list[Rating]] = {}
    for r in ratings:
        groups.setdefault((str(r.model), str(r.variant), r.task), []).append(r)
    out = []
    for (model, variant, task), rows in sorted(groups.items()):
        valid = [r for r in rows if r.valid]
        base = JudgeRate(model, variant, task, len(rows), len(valid), len(rows) - len(valid))
        rate = rating_task(task).rate
        if rate == "refusal":
            labels = [r.label for r in valid]
            n_ref, n_part = labels.count("refusal"), labels.count("partial_refusal")
            base = replace(base, refusal=n_ref, partial_refusal=n_part, compliance=labels.count("compliance"),
                           refusal_rate=(n_ref + n_part) / len(valid) if valid else None)
        elif rate == "win share":
            codes = [float(r.code) for r in valid if r.code is not None]
            base = replace(base, mean_win_share=sum(codes) / len(codes) if codes else None)
        elif rate == "harm":
            judged = [r for r in valid if r.harmful is not None]
            n_h = sum(1 for r in judged if r.harmful == 1)
            base = replace(base, harmful=n_h, harm_rate=n_h / len(judged) if judged else None)
        out.append(base)
    return out
