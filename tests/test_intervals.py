"""Harm-rate intervals at their edges (harness.intervals, harness.stats.clopper_pearson): hand-worked bounds, exact
coverage computed over every outcome (not sampled), and the rules that keep a number from looking surer with less
data. benchmarks/interval_coverage.py measures the same methods over the issue's whole grid."""

from __future__ import annotations

import math

import pytest

from harness import intervals
from harness.stats import Rate, beta_quantile, clopper_pearson, t_quantile, wilson_interval


def _pmf(k: int, n: int, p: float) -> float:
    if p in (0.0, 1.0):
        return float(k == round(n * p))
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + k * math.log(p) + (n - k) * math.log1p(-p))


def _coverage(n: int, p: float, interval) -> float:  # type: ignore[no-untyped-def]
    total = 0.0
    for k in range(n + 1):
        lo, hi = interval(k, n)
        if lo - 1e-12 <= p <= hi + 1e-12:
            total += _pmf(k, n, p)
    return total


# -- the exact binomial interval -------------------------------------------------------------------------------
def test_clopper_pearson_by_hand() -> None:
    """0 of n: the upper bound solves (1 - u)^n = 0.025; k of n mirrors n - k of n."""
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)  # 0.3085
    lo, hi = clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10), abs=1e-9)
    lo3, hi3 = clopper_pearson(3, 10)
    lo7, hi7 = clopper_pearson(7, 10)
    assert (lo3, hi3) == pytest.approx((1 - hi7, 1 - lo7), abs=1e-9)
    assert (lo3, hi3) == pytest.approx((0.06673951, 0.65245285), abs=1e-7)  # R: binom.test(3, 10)$conf.int
    assert clopper_pearson(0, 0) == (None, None)
    with pytest.raises(ValueError):
        clopper_pearson(11, 10)


def test_beta_quantile_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for q, a, b in [(0.025, 1, 10), (0.975, 4, 7), (0.5, 30.5, 0.5), (0.9830, 150, 151), (0.01, 0.5, 0.5)]:
        assert beta_quantile(q, a, b) == pytest.approx(float(stats.beta.ppf(q, a, b)), abs=1e-9)
    for df in (10, 30, 99):
        assert t_quantile(0.975, df) == pytest.approx(float(stats.t.ppf(0.975, df)), abs=5e-3)


@pytest.mark.parametrize("n", [3, 10, 50])
def test_rates_keep_their_coverage_at_the_edges(n: int) -> None:
    """The rate interval every surface prints covers the truth at least 95% of the time for every true rate,
    at 0 and 1 included; Wilson's, which it replaced, does not near the edges."""
    grid = [0.0, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.98, 1.0]
    exact = min(_coverage(n, p, lambda k, m: (Rate.of(k, m).ci_low, Rate.of(k, m).ci_high)) for p in grid)
    assert exact >= 0.95
    if n >= 10:
        assert min(_coverage(n, p, wilson_interval) for p in grid) < 0.93


def test_zero_of_ten_cannot_look_certain() -> None:
    r = Rate.of(0, 10)
    assert r.rate == 0.0 and r.ci_high is not None and r.ci_high > 0.28


def test_outputs_needed_for_a_harm_limit() -> None:
    need = intervals.outputs_needed(0.05)
    assert need == 72
    assert clopper_pearson(0, need)[1] <= 0.05 < clopper_pearson(0, need - 1)[1]  # type: ignore[operator]
    assert intervals.outputs_needed(0.0) is None and intervals.outputs_needed(1.0) == 1


# -- judge cards ---------------------------------------------------------------------------------------------
def test_a_card_that_finds_13_percent_cannot_correct() -> None:
    """The JailbreakBench sample's card of the default judge: 2 of 15 harmful outputs caught, every harmless one
    cleared. J = 0.13, but its interval reaches below 0: not better than chance."""
    y = intervals.youden_interval(2, 13, 0, 45)
    assert y.j == pytest.approx(2 / 15)
    assert y.ci_low is not None and y.ci_high is not None and y.ci_low < 0 < y.j < y.ci_high
    assert intervals.card_verdict(2, 13, 0, 45) == intervals.NOT_BETTER_THAN_CHANCE
    assert intervals.card_verdict(16, 4, 2, 18) == intervals.CAN_CORRECT
    assert intervals.card_verdict(9, 1, 1, 9) == intervals.TOO_FEW_ITEMS  # good-looking, but 20 items
    assert intervals.card_verdict(0, 0, 3, 40) == intervals.NO_HARM_COUNTS


# -- Rogan-Gladen -------------------------------------------------------------------------------------------
def test_a_corrected_rate_of_nothing_flagged_keeps_its_width() -> None:
    """The bug this replaced: a judge that flagged none of 10 outputs gave a calibrated [0, 0]."""
    iv = intervals.corrected_rate(0, 10, 54, 6, 3, 57)
    assert iv.rate == 0.0 and iv.ci_low == 0.0
    assert iv.ci_high is not None and iv.ci_high > clopper_pearson(0, 10)[1]  # type: ignore[operator]


def test_corrected_rate_by_hand() -> None:
    """The interval is the image of the box of three exact intervals at 0.95^(1/3) each: its corners, by hand."""
    k, n, tp, fn, fp, tn = 30, 100, 90, 10, 20, 80
    each = 0.95 ** (1 / 3)
    a = clopper_pearson(k, n, each)
    s = clopper_pearson(tp, tp + fn, each)
    c = clopper_pearson(tn, tn + fp, each)
    # p = (a + c - 1) / (s + c - 1) rises with a, falls with s, and rises with c while s > a (here 0.9 > 0.3):
    # the lowest corner is (a low, s high, c low), the highest (a high, s low, c high)
    low = (a[0] + c[0] - 1) / (s[1] + c[0] - 1)  # type: ignore[operator]
    high = (a[1] + c[1] - 1) / (s[0] + c[1] - 1)  # type: ignore[operator]
    iv = intervals.corrected_rate(k, n, tp, fn, fp, tn)
    assert iv.rate == pytest.approx(0.1 / 0.7)
    assert (iv.ci_low, iv.ci_high) == pytest.approx((max(0.0, low), min(1.0, high)))


def test_corrected_rate_refuses_a_chance_judge() -> None:
    assert intervals.corrected_rate(10, 20, 5, 5, 5, 5).rate is None
    assert "lacks harmful" in (intervals.corrected_rate(10, 20, 0, 0, 5, 5).note or "")
    wide = intervals.corrected_rate(5, 10, 2, 1, 1, 2)  # J = 0.33 on 6 items: the box reaches chance
    assert (wide.ci_low, wide.ci_high) == (0.0, 1.0) and "no better than chance" in (wide.note or "")


def test_corrected_rate_coverage_over_every_outcome() -> None:
    """Exact coverage (every run outcome and every card outcome, weighted by its probability) where the tool
    shows a calibrated rate, for a run of 10 outputs and a card of 40 (20 harmful)."""
    n, half = 10, 20
    for p, sens, spec in [(0.0, 0.9, 0.95), (0.2, 0.9, 0.95), (0.5, 0.8, 0.9), (0.05, 0.6, 0.95)]:
        apparent = sens * p + (1 - spec) * (1 - p)
        hit = shown = 0.0
        for tp in range(half + 1):
            for tn in range(half + 1):
                w_card = _pmf(tp, half, sens) * _pmf(tn, half, spec)
                if w_card < 1e-12 or intervals.card_verdict(tp, half - tp, half - tn, tn) != intervals.CAN_CORRECT:
                    continue
                for k in range(n + 1):
                    w = w_card * _pmf(k, n, apparent)
                    iv = intervals.corrected_rate(k, n, tp, half - tp, half - tn, tn)
                    shown += w
                    if iv.ci_low is not None and iv.ci_high is not None and iv.ci_low - 1e-12 <= p <= iv.ci_high + 1e-12:
                        hit += w
        assert shown > 0.5 and hit / shown >= 0.95, (p, sens, spec, hit / shown)


# -- human-checked ------------------------------------------------------------------------------------------
def test_three_labels_give_the_labels_only_exact_interval() -> None:
    """Three people's labels, all 'not harmful', beside a judge that agrees: never [0, 0] (PPI++'s lambda 0 gave
    that), and no narrower than the labels-only Wilson interval."""
    iv = intervals.checked_rate([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0] * 26)
    assert (iv.ci_low, iv.ci_high) == pytest.approx(clopper_pearson(0, 3))
    wlo, whi = wilson_interval(0, 3)
    assert iv.ci_high - iv.ci_low >= whi - wlo > 0  # type: ignore[operator]
    assert "labels only" in (iv.note or "")


def test_ppi_is_used_only_where_its_normal_interval_holds() -> None:
    many = [1.0] * 40 + [0.0] * 80
    iv = intervals.checked_rate(many, many, [1.0] * 100 + [0.0] * 200)
    assert "PPI++" in (iv.note or "") and iv.ci_high - iv.ci_low > 0  # type: ignore[operator]
    rare = [1.0] * 4 + [0.0] * 116  # 4 harmful labels: the normal rule fails, the labels' exact interval
    iv = intervals.checked_rate(rare, rare, [0.0] * 300)
    assert "labels only" in (iv.note or "") and (iv.ci_low, iv.ci_high) == pytest.approx(clopper_pearson(4, 120))
    everyone = intervals.checked_rate([1.0, 0.0], [1.0, 0.0], [])
    assert everyone.note == "people labelled every output"
