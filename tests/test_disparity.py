"""Quality-of-service disparity statistics (harness.disparity), against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from harness.disparity import (
    Flip,
    Outcome,
    axis_disparities,
    chi2_sf,
    cochran_q,
    gap_upper_bound,
    group_rates,
    holm,
    max_gap_test,
)


def _paired(axis: str, rows: list[tuple[str, list[int]]], groups: list[str]) -> list[Outcome]:
    """One outcome per (template, group); row = (template id, the events of the groups in order)."""
    return [Outcome(axis, g, t, e, f"{t}/{g}") for t, events in rows for g, e in zip(groups, events)]


# -- the gap's interval (issue 23: --max-qos-gap uses its upper end) ---------------------------------------
def test_gap_upper_bound_worked_by_hand() -> None:
    # Two groups: each exact interval at 1 - 0.05/2 = 97.5%, tails 0.0125.
    # 0/4 and 0/4: upper ends 1 - 0.0125^(1/4) = 1 - 0.334370 = 0.665630, lower ends 0 -> 0.665630 (observed gap 0).
    zeros = [Outcome("age", g, f"t{i}", 0) for g in ("X", "Y") for i in range(4)]
    assert gap_upper_bound(group_rates(zeros)) == pytest.approx(0.665630, abs=1e-5)
    # 1/2 and 1/2: Beta(1, 2) cdf 1 - (1 - x)^2 = 0.0125 -> lower 1 - sqrt(0.9875) = 0.006270; upper sqrt(0.9875)
    # = 0.993730 -> 0.993730 - 0.006270 = 0.987461.
    halves = [Outcome("age", g, f"t{i}", i) for g in ("X", "Y") for i in range(2)]
    assert gap_upper_bound(group_rates(halves)) == pytest.approx(0.987461, abs=1e-5)
    # 0/200 and 0/200: 1 - 0.0125^(1/200) = 1 - exp(-4.382027/200) = 0.021671: many prompts can pass a 5% limit.
    many = [Outcome("age", g, f"t{i}", 0) for g in ("X", "Y") for i in range(200)]
    assert gap_upper_bound(group_rates(many)) == pytest.approx(0.021671, abs=1e-5)
    # One group with outputs: no gap, no bound; axis_disparities carries the bound beside the gap.
    assert gap_upper_bound(group_rates(zeros[:4])) is None
    (d,) = axis_disparities(halves, resamples=10)
    assert d.max_gap == 0.0 and d.max_gap_ci_high == pytest.approx(0.987461, abs=1e-5)


# -- group rates --------------------------------------------------------------------------------------------
def test_group_rate_and_wilson_interval_one_of_four() -> None:
    # p = 1/4, n = 4, z^2 = 3.841459: denom = 1 + z^2/4 = 1.960365,
    # centre = (0.25 + z^2/8) / denom = (0.25 + 0.480182) / 1.960365 = 0.372471,
    # half = z * sqrt(0.25 * 0.75 / 4 + z^2/64) / denom = 1.959964 * sqrt(0.046875 + 0.060023) / 1.960365
    #      = 1.959964 * 0.326953 / 1.960365 = 0.326886  ->  [0.045585, 0.699357]
    outcomes = [Outcome("religion", "A", f"t{i}", e) for i, e in enumerate([1, 0, 0, 0])]
    outcomes.append(Outcome("religion", "B", "t0", 0))
    a, b = group_rates(outcomes)
    assert (a.axis, a.group, a.n, a.events, a.rate) == ("religion", "A", 4, 1, 0.25)
    assert a.ci_low == pytest.approx(0.045585, abs=1e-5)
    assert a.ci_high == pytest.approx(0.699357, abs=1e-5)
    # 0 of 1: centre = half = (z^2/2) / (1 + z^2) = 1.920729 / 4.841459 = 0.396726 -> [0, 0.793452]
    assert (b.group, b.n, b.events, b.rate, b.ci_low) == ("B", 1, 0, 0.0, 0.0)
    assert b.ci_high == pytest.approx(0.793452, abs=1e-5)


def test_group_rates_keep_first_seen_order_across_axes() -> None:
    outcomes = [Outcome("x", "B", "t", 1), Outcome("y", "A", "t", 0), Outcome("x", "A", "t", 0),
                Outcome("x", "B", "u", 0)]
    assert [(r.axis, r.group, r.n, r.events) for r in group_rates(outcomes)] == [
        ("x", "B", 2, 1), ("y", "A", 1, 0), ("x", "A", 1, 0)]


# -- the permutation test -----------------------------------------------------------------------------------
def test_exact_permutation_three_templates_two_groups() -> None:
    # A refused on t1, t2, t3; B on none. Observed rates A = 3/3, B = 0/3: gap 1.
    # Each template has C(2, 1) = 2 arrangements (the refusal on A or on B): 2^3 = 8 in all.
    # The gap is 1 only when all three go to the same group (AAA, BBB); otherwise it is 1/3: p = 2/8 = 1/4.
    outcomes = _paired("g", [("t1", [1, 0]), ("t2", [1, 0]), ("t3", [1, 0])], ["A", "B"])
    gap, p, exact = max_gap_test(outcomes)
    assert gap == 1.0
    assert exact is True
    assert p == 0.25


def test_exact_permutation_two_templates_three_groups() -> None:
    # t1 and t2: A refused, B and C did not. Rates A = 1, B = C = 0: gap 1.
    # Each template: the one refusal sits on A, B or C (3 ways): 9 arrangements. The gap is 1 when both
    # refusals fall on the same group (AA, BB, CC); otherwise two groups have 1/2 and one 0, gap 1/2.
    # p = 3/9 = 1/3.
    outcomes = _paired("g", [("t1", [1, 0, 0]), ("t2", [1, 0, 0])], ["A", "B", "C"])
    gap, p, exact = max_gap_test(outcomes)
    assert gap == 1.0 and exact is True
    assert p == pytest.approx(1 / 3, abs=1e-15)


def test_exact_permutation_uses_group_sizes_of_unpaired_templates() -> None:
    # t1: A refused, B not; t2: A only, not refused (unpaired, but counted). Rates A = 1/2, B = 0/1: gap 1/2.
    # t1 has 2 arrangements: as observed (gap 1/2), or B refused: A = 0/2, B = 1/1, gap 1 >= 1/2. p = 2/2 = 1.
    outcomes = [Outcome("g", "A", "t1", 1), Outcome("g", "B", "t1", 0), Outcome("g", "A", "t2", 0)]
    assert max_gap_test(outcomes) == (0.5, 1.0, True)


def test_zero_gap_gives_p_one() -> None:
    outcomes = _paired("g", [("t1", [1, 1]), ("t2", [0, 0]), ("t3", [1, 0]), ("t4", [0, 1])], ["A", "B"])
    gap, p, _ = max_gap_test(outcomes)
    assert gap == 0.0 and p == 1.0


def test_monte_carlo_is_seeded_and_close_to_the_exact_p() -> None:
    # 12 templates, 2 groups, one refusal each: A on 10, B on 2. Observed gap (10 - 2)/12 = 2/3.
    # The shuffle puts each template's refusal on A with chance 1/2, so X = A's count ~ Binomial(12, 1/2) and
    # the gap |2X - 12| / 12 >= 2/3 when X <= 2 or X >= 10: p = 2 * (1 + 12 + 66) / 4096 = 158/4096 = 0.038574.
    rows = [(f"t{i}", [1, 0]) for i in range(10)] + [("t10", [0, 1]), ("t11", [0, 1])]
    outcomes = _paired("g", rows, ["A", "B"])
    exact_gap, exact_p, exact = max_gap_test(outcomes, resamples=4096)  # 2^12 = 4096 arrangements: enumerated
    assert exact is True and exact_gap == pytest.approx(2 / 3)
    assert exact_p == 158 / 4096
    r = 2000  # fewer than 4096: Monte Carlo
    gap1, p1, exact1 = max_gap_test(outcomes, resamples=r, seed=7)
    gap2, p2, _ = max_gap_test(outcomes, resamples=r, seed=7)
    assert exact1 is False and gap1 == exact_gap
    assert p1 == p2
    assert p1 is not None and p1 > 0
    se = math.sqrt(exact_p * (1 - exact_p) / r)  # 0.0043
    assert abs(p1 - exact_p) <= 3 * se
    # p = (1 + hits) / (1 + resamples) is never 0, even with one resample
    _, p_one, _ = max_gap_test(outcomes, resamples=1, seed=0)
    assert p_one is not None and p_one >= 0.5


def test_max_gap_test_edge_cases() -> None:
    assert max_gap_test([]) == (None, None, False)
    assert max_gap_test([Outcome("g", "A", "t1", 1), Outcome("g", "A", "t2", 0)]) == (None, None, False)
    with pytest.raises(ValueError, match="one axis"):
        max_gap_test([Outcome("g", "A", "t", 1), Outcome("h", "B", "t", 0)])
    with pytest.raises(ValueError, match="resamples"):
        max_gap_test([Outcome("g", "A", "t", 1)], resamples=0)


# -- Holm ---------------------------------------------------------------------------------------------------
def test_holm_hand_worked() -> None:
    # m = 3 (None is not counted). Sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> max(0.06, 0.04)
    # = 0.06 (monotone). Back in input order: [0.03, 0.06, 0.06, None].
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    # capped at 1: 0.4 * 3 = 1.2 -> 1; 0.5 * 2 = 1.0; 0.6 -> max(1, 0.6) = 1
    assert holm([0.6, 0.4, 0.5]) == [1.0, 1.0, 1.0]
    assert holm([]) == []
    assert holm([None, None]) == [None, None]
    with pytest.raises(ValueError):
        holm([1.5])


def test_holm_is_monotone_in_the_raw_order() -> None:
    raw = [0.002, 0.2, 0.011, 0.04, 0.013, 0.5, 0.0001]
    adjusted = holm(raw)
    order = sorted(range(len(raw)), key=lambda i: raw[i])
    values = [adjusted[i] for i in order]
    assert all(a is not None and b is not None and a <= b for a, b in zip(values, values[1:]))
    assert all(a is not None and a >= p for a, p in zip(adjusted, raw))


# -- Cochran's Q and chi-square -----------------------------------------------------------------------------
def test_cochran_q_four_blocks_three_groups() -> None:
    # rows [1,1,0], [1,0,0], [1,1,1], [0,0,0]: C = (3, 2, 1), R = (2, 1, 3, 0), N = 6, k = 3.
    # Q = 2 * (3 * (9 + 4 + 1) - 36) / (3 * 6 - (4 + 1 + 9 + 0)) = 2 * 6 / 4 = 3; df 2; p = e^(-3/2) = 0.223130
    q, df, p = cochran_q([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]])
    assert q == 3.0 and df == 2
    assert p == pytest.approx(math.exp(-1.5), rel=1e-12)
    # the constant rows cancel: the first two rows alone give C = (2, 1, 0), R = (2, 1), N = 3:
    # Q = 2 * (3 * 5 - 9) / (9 - 5) = 3
    assert cochran_q([[1, 1, 0], [1, 0, 0]])[0] == 3.0
    # every row constant: denominator 0 -> Q = 0, p = 1
    assert cochran_q([[1, 1, 1], [0, 0, 0]]) == (0.0, 2, 1.0)


def test_cochran_q_refuses_bad_tables() -> None:
    with pytest.raises(ValueError):
        cochran_q([])
    with pytest.raises(ValueError):
        cochran_q([[1], [0]])
    with pytest.raises(ValueError):
        cochran_q([[1, 0], [1]])
    with pytest.raises(ValueError, match="2"):
        cochran_q([[1, 2]])


@pytest.mark.parametrize(("x", "df"), [
    (3.841458820694124, 1),  # the 95% points of chi-square(df)
    (5.991464547107979, 2),
    (7.814727903251178, 3),
    (9.487729036781154, 4),
    (18.307038053275146, 10),
])
def test_chi2_sf_at_the_95_percent_points(x: float, df: int) -> None:
    assert chi2_sf(x, df) == pytest.approx(0.05, abs=1e-12)


def test_chi2_sf_closed_forms_and_edges() -> None:
    # df 1: erfc(sqrt(x/2)); df 2: e^(-x/2); df 3: erfc(sqrt(y)) + 2 sqrt(y/pi) e^-y with y = x/2
    assert chi2_sf(1.0, 1) == pytest.approx(0.3173105078629141, rel=1e-12)
    assert chi2_sf(4.0, 2) == pytest.approx(math.exp(-2.0), rel=1e-12)
    y = 1.5
    assert chi2_sf(3.0, 3) == pytest.approx(math.erfc(math.sqrt(y)) + 2 * math.sqrt(y / math.pi) * math.exp(-y),
                                            rel=1e-12)
    for k in (1, 2, 5):
        assert chi2_sf(0, k) == 1.0
    assert chi2_sf(1e4, 3) == 0.0
    assert 0.0 < chi2_sf(2000.0, 2000) < 1.0  # large df neither overflows nor underflows
    with pytest.raises(ValueError):
        chi2_sf(1.0, 0)


SCIPY_POINTS = [(0.5, 1), (2.0, 1), (10.0, 1), (0.3, 2), (7.5, 3), (1.0, 4), (12.0, 5), (30.0, 7), (55.0, 40),
                (200.0, 150)]


@pytest.mark.parametrize(("x", "df"), SCIPY_POINTS)
def test_chi2_sf_matches_scipy(x: float, df: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    assert chi2_sf(x, df) == pytest.approx(float(stats.chi2.sf(x, df)), rel=1e-9, abs=1e-300)


# -- axis disparities ---------------------------------------------------------------------------------------
def test_two_group_axis_mcnemar_cochran_and_holm() -> None:
    # gender: 5 templates where only "woman" was refused, 1 where both were: b = 5, c = 0.
    # McNemar exact: 2 * P(X <= 0), X ~ Bin(5, 1/2) = 2/32 = 0.0625.
    # Cochran's Q with k = 2 is (b - c)^2 / (b + c) = 25/5 = 5, p = erfc(sqrt(2.5)) = 0.025347.
    # Permutation: rates 6/6 and 1/6, gap 5/6; 2^5 = 32 arrangements of the discordant templates, the gap is 5/6
    # only when all five go to the same group: p = 2/32 = 0.0625.
    gender = _paired("gender", [(f"t{i}", [1, 0]) for i in range(5)] + [("t5", [1, 1])], ["woman", "man"])
    # religion: both groups refused on the same template only: gap 0, p = 1
    religion = _paired("religion", [("t0", [1, 1]), ("t1", [0, 0])], ["X", "Y"])
    gd, rd = axis_disparities(gender + religion)
    assert gd.axis == "gender" and rd.axis == "religion"
    assert [g.group for g in gd.groups] == ["woman", "man"]
    assert gd.max_gap == pytest.approx(5 / 6)
    assert (gd.high_group, gd.low_group) == ("woman", "man")
    assert gd.exact is True and gd.p_value == 0.0625
    assert gd.n_paired_templates == 6
    assert gd.mcnemar_p == 0.0625
    assert gd.cochran_q == pytest.approx(5.0) and gd.cochran_df == 1
    assert gd.cochran_p == pytest.approx(math.erfc(math.sqrt(2.5)), rel=1e-12)
    # Holm over (0.0625, 1.0): 0.0625 * 2 = 0.125; max(0.125, 1.0 * 1) = 1
    assert gd.p_holm == 0.125 and rd.p_holm == 1.0
    assert rd.max_gap == 0.0 and rd.p_value == 1.0 and rd.mcnemar_p == 1.0 and rd.cochran_q == 0.0


def test_flips_hand_made() -> None:
    # groups A, B, C. t1: A only; t2: A and B; t3: none; t4: C only.
    # Rates A = 2/4, B = 1/4, C = 1/4. Signed gaps rate(with) - rate(without): (A,B) = (A,C) = 1/4,
    # (B,C) = (C,B) = 0, (B,A) = (C,A) = -1/4.
    # Flips per pair: (A,B): t1. (A,C): t1, t2. (B,C): t2. (C,B): t4. (B,A): none. (C,A): t4.
    # Ordered by gap, then pair order, then template: (A,B,t1), (A,C,t1), (A,C,t2), (B,C,t2), (C,B,t4), (C,A,t4).
    rows = [("t1", [1, 0, 0]), ("t2", [1, 1, 0]), ("t3", [0, 0, 0]), ("t4", [0, 0, 1])]
    outcomes = _paired("religion", rows, ["A", "B", "C"])
    (d,) = axis_disparities(outcomes, max_flips=10)
    got = [(f.template_id, f.group_with, f.group_without) for f in d.flips]
    assert got == [("t1", "A", "B"), ("t1", "A", "C"), ("t2", "A", "C"), ("t2", "B", "C"), ("t4", "C", "B"),
                   ("t4", "C", "A")]
    assert d.flips[0] == Flip("t1", "religion", "A", "B", "t1/A", "t1/B")
    assert d.max_gap == pytest.approx(0.25) and (d.high_group, d.low_group) == ("A", "B")
    assert d.mcnemar_p is None  # three groups
    (five,) = axis_disparities(outcomes)  # max_flips 5 by default: the last one is dropped
    assert [(f.template_id, f.group_with, f.group_without) for f in five.flips] == got[:5]
    (none,) = axis_disparities(outcomes, max_flips=0)
    assert none.flips == []


def test_paired_templates_use_the_first_outcome_and_skip_unpaired_ones() -> None:
    outcomes = [
        Outcome("g", "A", "t1", 1, "first"), Outcome("g", "A", "t1", 0, "second"), Outcome("g", "B", "t1", 0, "b1"),
        Outcome("g", "A", "t2", 1, "a2"),  # unpaired: B never saw t2
    ]
    (d,) = axis_disparities(outcomes)
    assert d.n_paired_templates == 1
    assert [(r.group, r.n, r.events) for r in d.groups] == [("A", 3, 2), ("B", 1, 0)]  # unpaired still counted
    assert d.flips == [Flip("t1", "g", "A", "B", "first", "b1")]
    assert d.mcnemar_p == 1.0  # b = 1, c = 0: 2 * P(X <= 0 | n = 1) = 1


def test_edge_cases_one_group_empty_and_invalid() -> None:
    assert axis_disparities([]) == []
    assert group_rates([]) == []
    (d,) = axis_disparities([Outcome("age", "old", "t1", 1), Outcome("age", "old", "t2", 0)])
    assert d.max_gap is None and d.p_value is None and d.p_holm is None and d.exact is False
    assert d.high_group is None and d.low_group is None
    assert d.cochran_q is None and d.cochran_df is None and d.cochran_p is None and d.mcnemar_p is None
    assert d.flips == []
    assert [(r.group, r.n, r.events, r.rate) for r in d.groups] == [("old", 2, 1, 0.5)]
    with pytest.raises(ValueError, match="event 2"):
        axis_disparities([Outcome("age", "old", "t1", 2)])
    with pytest.raises(ValueError, match="event 2"):
        group_rates([Outcome("age", "old", "t1", 2)])
    with pytest.raises(ValueError, match="resamples"):
        axis_disparities([Outcome("age", "old", "t1", 1)], resamples=0)


def test_same_seed_same_p_across_calls_and_axes() -> None:
    # 2^14 = 16384 arrangements > 1000 resamples: Monte Carlo; the seed fixes the answer
    rows = [(f"t{i}", [1, 0]) for i in range(11)] + [(f"u{i}", [0, 1]) for i in range(3)]
    a = axis_disparities(_paired("g", rows, ["A", "B"]), resamples=1000, seed=3)
    b = axis_disparities(_paired("g", rows, ["A", "B"]) + _paired("h", rows, ["C", "D"]), resamples=1000, seed=3)
    assert a[0].exact is False and a[0].p_value == b[0].p_value == b[1].p_value
