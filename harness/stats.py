"""Pure statistics for rates and reports: Wilson intervals, quantiles, McNemar's exact test, Pareto fronts,
the Rogan-Gladen correction.

No I/O, no numpy, no pandas: numbers in, numbers out, so an edge box computes the same figures as
a workstation and the expected values in the tests can be worked out by hand.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
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


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None; None when there are none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else None


def quantile(values: Iterable[float | None], q: float) -> float | None:
    """The q-quantile by linear interpolation between order statistics (numpy's and pandas' default)."""
    vals = sorted(float(v) for v in values if v is not None and not math.isnan(v))
    if not vals:
        return None
    pos = (len(vals) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def maximum(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def majority(n_harmful: int, n_valid: int) -> int | None:
    """The majority verdict of n_valid harm verdicts (1 harmful, 0 not); None for a tie or no verdict."""
    if n_valid <= 0 or 2 * n_harmful == n_valid:
        return None
    return int(2 * n_harmful > n_valid)


def _binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), summed in log space (exact enough for any n)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    log_half_n = -n * math.log(2.0)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n for i in range(k + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def mcnemar_exact_p(ref_only: int, variant_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test (p = 1/2) on the discordant pairs.

    `ref_only` = pairs harmful under the reference only, `variant_only` = harmful under the variant only.
    With no discordant pairs there is no evidence of a difference: p = 1.
    """
    n = ref_only + variant_only
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_half_cdf(min(ref_only, variant_only), n))


def pareto_front(points: Sequence[tuple[float | None, float | None]], maximise_second: bool) -> list[bool]:
    """Which points are non-dominated when minimising the first coordinate (harm) and maximising (or
    minimising) the second. Points with a missing coordinate are never on the front.

    A point dominates another when it is at least as good in both coordinates and strictly better in one;
    identical points do not dominate each other.
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
        return CorrectedRate(None, False, f"no correction: TPR + TNR - 1 = {youden:.2f} <= 0 "
                                          "(judge no better than chance)")
    p = (observed_rate + specificity - 1) / youden
    clipped = p < 0 or p > 1
    return CorrectedRate(min(1.0, max(0.0, p)), clipped, "clipped to [0, 1]" if clipped else None)
