"""What rates are computed from: the store's counts of harm verdicts, answers and refusal labels per output, and
the key of a variant. The store supplies the counts (harness.store.Store.rating_counts / answer_counts /
label_counts) and the probabilities behind verdicts (rating_probabilities); the rest of harness.rates turns them into rates."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.records import REFUSAL_LABELS, Generation

VariantKey = tuple[str, str, str]  # device, model, variant


@dataclass(frozen=True)
class RatingCount:
    """Harm verdicts of one rater on one output in one task."""

    sample_key: str
    rater: str
    rater_kind: str
    task: str
    n_valid: int
    n_harmful: int
    n_invalid: int


@dataclass(frozen=True)
class AnswerCount:
    """How often one rater gave one answer (a score, a label or a verdict, as text) about one output."""

    sample_key: str
    rater: str
    task: str
    answer: str
    n: int


@dataclass(frozen=True)
class RatingProbability:
    """The probability behind one rater's harm verdicts of one output in one task (a probe judge keeps it)."""

    sample_key: str
    rater: str
    task: str
    probability: float


@dataclass(frozen=True)
class LabelCount:
    """Refusal labels of one rater on one output."""

    sample_key: str
    rater: str
    rater_kind: str
    n_valid: int
    n_refusal: int
    n_partial: int
    n_invalid: int


def label_counts(rows: Iterable[tuple[str, str, str, str | None, int, int]]) -> list[LabelCount]:
    """LabelCounts from the store's (sample_key, rater, kind, label or None, n) rows."""
    acc: dict[tuple[str, str], list[Any]] = {}
    for sample_key, rater, kind, label, n, _ in rows:
        a = acc.setdefault((sample_key, rater), [kind, 0, 0, 0, 0])
        if label is None:
            a[4] += n
        else:
            a[1] += n
            a[2] += n if label in REFUSAL_LABELS else 0
            a[3] += n if label == "partial_refusal" else 0
    return [LabelCount(sk, r, a[0], a[1], a[2], a[3], a[4]) for (sk, r), a in acc.items()]


def by_sample_key(generations: Iterable[Generation]) -> dict[str, Generation]:
    """The generations by their sample key (the key every count names its output by)."""
    return {g.sample_key: g for g in generations}
