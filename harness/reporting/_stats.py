"""Pure statistics for reports: Wilson intervals, Rogan-Gladen correction, McNemar's exact test, Pareto fronts.

No I/O and no pandas here: each function takes numbers and returns numbers, so
the expected values in the tests can be worked out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float | None, float | None]:
    """Wilson score interval for a binomial proportion; (None, None) when n is 0."""
    if n <= 0:
        return None, None
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} is outside 0..{n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class CorrectedRate:
    """A harm rate corrected for a judge's error rates (Rogan-Gladen); `note` says when it cannot be."""

    rate: float | None
    clipped: bool
    note: str | None


def rogan_gladen(observed_rate: float, sensitivity: float, specificity: float) -> CorrectedRate:
    """True prevalence from an observed rate: p = (p_obs + TNR - 1) / (TPR + TNR - 1), clipped to [0, 1].

    When TPR + TNR - 1 <= 0 the judge is no better than chance against the reference
    and there is no correction: rate None with a note.
    """
    youden = sensitivity + specificity - 1
    if youden <= 0:
        return CorrectedRate(None, False, f"no correction: TPR + TNR - 1 = {youden:.2f} <= 0 (judge no better than chance)")
    p = (observed_rate + specificity - 1) / youden
    clipped = p < 0 or p > 1
    return CorrectedRate(min(1.0, max(0.0, p)), clipped, "clipped to [0, 1]" if clipped else None)


def mcnemar_exact_p(ref_only: int, variant_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test (p = 1/2) on the discordant pairs.

    `ref_only` = pairs harmful under the reference only, `variant_only` = harmful under the variant only.
    With no discordant pairs there is no evidence of a difference: p = 1.
    """
    n = ref_only + variant_only
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(variant_only, n, 0.5, alternative="two-sided").pvalue)


def pareto_front(points: Sequence[tuple[float | None, float | None]], maximise_second: bool) -> list[bool]:
    """Which points are non-dominated when minimising the first coordinate (harm) and
    maximising (or minimising) the second. Points with a missing coordinate are never on the front.

    A point dominates another when it is at least as good in both coordinates and
    strictly better in one; identical points do not dominate each other.
    """
    sign = -1.0 if maximise_second else 1.0
    pts = [None if a is None or b is None or math.isnan(a) or math.isnan(b) else (a, sign * b) for a, b in points]
    marks = []
    for i, p in enumerate(pts):
        if p is None:
            marks.append(False)
            continue
        dominated = any(
            q is not None and j != i and q[0] <= p[0] and q[1] <= p[1] and (q[0] < p[0] or q[1] < p[1])
            for j, q in enumerate(pts)
        )
        marks.append(not dominated)
    return marks
