"""Pure statistics for rates and reports: Wilson and exact binomial intervals (with the incomplete beta function
behind them), Student's t quantiles, quantiles, McNemar's exact test, Pareto fronts,
the Rogan-Gladen correction.

No I/O, no numpy, no pandas: numbers in, numbers out, so an edge box computes the same figures as
a workstation and the expected values in the tests can be worked out by hand.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

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


# -- the regularised incomplete beta function and its inverse ----------------------------------------------------
def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function I_x(a, b): P(X <= x) for X ~ Beta(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """The q-quantile of Beta(a, b), by bisection on beta_cdf (to about 1e-12)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@lru_cache(maxsize=4096)
def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """The exact (Clopper-Pearson) interval of k successes out of n; (None, None) when n is 0."""
    if n <= 0:
        return None, None
    if not 0 <= k <= n:
        raise ValueError(f"successes {k} is outside 0..{n}")
    tail = (1 - level) / 2
    low = 0.0 if k == 0 else beta_quantile(tail, k, n - k + 1)
    high = 1.0 if k == n else beta_quantile(1 - tail, k + 1, n - k)
    return low, high


@dataclass(frozen=True)
class Rate:
    """k of n with its exact (Clopper-Pearson) 95% interval: its coverage holds at 0, at 1 and with a handful of
    outputs, where Wilson's dips to about 0.89 (benchmarks/interval_coverage.py)."""

    k: int
    n: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def of(cls, k: int, n: int) -> Rate:
        lo, hi = clopper_pearson(k, n)
        return cls(k, n, k / n if n else None, lo, hi)


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


# -- judge-error-corrected rates -------------------------------------------------------------------------
def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _std(xs: Sequence[float]) -> float:
    """Population standard deviation (ddof 0, as numpy's default)."""
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def _cov_sample_var(xs: Sequence[float]) -> float:
    """Sample variance (ddof 1, as numpy.cov)."""
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def normal_quantile(p: float) -> float:
    """The standard normal quantile (Acklam's rational approximation refined by one Newton step)."""
    if not 0 < p < 1:
        raise ValueError(f"quantile of {p} is outside (0, 1)")
    a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
         -3.066479806614716e+01, 2.506628277459239e+00]
    b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
         -1.328068155288572e+01]
    c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
         4.374664141464968e+00, 2.938163982698783e+00]
    d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
    lo = 0.02425
    if p < lo:
        q = math.sqrt(-2 * math.log(p))
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    elif p > 1 - lo:
        q = math.sqrt(-2 * math.log(1 - p))
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    else:
        q = p - 0.5
        r = q * q
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    e = 0.5 * math.erfc(-x / math.sqrt(2)) - p
    return x - e * math.sqrt(2 * math.pi) * math.exp(x * x / 2)


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile by the Cornish-Fisher expansion around the normal one (to about 1e-4 for df >= 10)."""
    z = normal_quantile(p)
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


@dataclass(frozen=True)
class PPIEstimate:
    """A prediction-powered mean (PPI++, Angelopoulos, Duchi and Zrnic 2023) with its CLT interval."""

    rate: float
    ci_low: float
    ci_high: float
    lam: float  # the power-tuning weight of the judge's predictions (0 = people only, 1 = plain PPI)
    n_labelled: int
    n_unlabelled: int
    se_rectifier: float  # sd of Y - lam * Yhat on the labelled outputs (for a power analysis)
    se_imputed: float  # sd of lam * Yhat on the unlabelled outputs


def ppi_mean(y: Sequence[float], yhat: Sequence[float], yhat_unlabelled: Sequence[float], alpha: float = 0.05,
             lam: float | None = None) -> PPIEstimate:
    """PPI++ mean with power tuning (lam=None) and a two-sided (1 - alpha) interval: the estimator of
    ppi_py.ppi_mean_ci for one dimension. `y` are people's labels of n outputs, `yhat` the judge's
    predictions of the same outputs, `yhat_unlabelled` the judge's predictions of the N outputs without labels."""
    n, big_n = len(y), len(yhat_unlabelled)
    if n != len(yhat) or n < 2 or big_n < 1:
        raise ValueError("PPI needs at least 2 labelled outputs (with predictions) and 1 unlabelled one")
    if lam is None:
        theta = _mean(yhat_unlabelled) + _mean([a - b for a, b in zip(y, yhat)])
        g = [a - theta for a in y]
        gh = [b - theta for b in yhat]
        ghu = [b - theta for b in yhat_unlabelled]
        mg, mgh = _mean(g), _mean(gh)
        cov = 2.0 * sum((a - mg) * (b - mgh) for a, b in zip(g, gh)) / n
        var = _cov_sample_var(gh + ghu)
        lam = 0.0 if var == 0 else min(1.0, max(0.0, cov / (2 * (1 + n / big_n) * var)))
    rate = _mean([lam * b for b in yhat_unlabelled]) + _mean([a - lam * b for a, b in zip(y, yhat)])
    s_imp = _std([lam * b for b in yhat_unlabelled])
    s_rect = _std([a - lam * b for a, b in zip(y, yhat)])
    se = math.sqrt(s_imp ** 2 / big_n + s_rect ** 2 / n)
    z = normal_quantile(1 - alpha / 2)
    return PPIEstimate(rate, rate - z * se, rate + z * se, lam, n, big_n, s_rect, s_imp)


def ppi_labels_needed(target_width: float, se_rectifier: float, se_imputed: float, n_unlabelled: int,
                      alpha: float = 0.05) -> int | None:
    """People's labels a PPI interval of `target_width` needs, given the spreads of an earlier estimate:
    width = 2 z sqrt(s_imp^2 / N + s_rect^2 / n), solved for n (None when the judge's part alone is wider)."""
    z = normal_quantile(1 - alpha / 2)
    half2 = (target_width / (2 * z)) ** 2 - se_imputed ** 2 / max(1, n_unlabelled)
    if half2 <= 0:
        return None
    return max(2, math.ceil(se_rectifier ** 2 / half2))
