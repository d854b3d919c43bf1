"""Agreement metrics on small cases worked out by hand (see each comment), plus cross-checks with reference packages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.agreement import metrics as m
from harness.agreement.bootstrap import percentile_interval, resampled_sums, seed_for
from harness.agreement.ranking import holm

P = 0.9


# -- RBO ------------------------------------------------------------------------------------------
def test_rbo_identical_lists_is_one() -> None:
    # Eq. 32 with X_d = d: (1-p)/p * sum_{d<=3} p^d + (0 + 1) p^3 = (1-p)(1+p+p^2) + p^3 = 1
    assert m.rbo_ext(["a", "b", "c"], ["a", "b", "c"], P) == pytest.approx(1.0)


def test_rbo_disjoint_lists_is_zero() -> None:
    assert m.rbo_ext(["a", "b"], ["c", "d"], P) == pytest.approx(0.0)


def test_rbo_swapped_pair() -> None:
    # [a, b] vs [b, a]: X_1 = 0, X_2 = 2 -> (0.1/0.9) * (2/2 * 0.81) + (2/2) * 0.81 = 0.09 + 0.81
    assert m.rbo_ext(["a", "b"], ["b", "a"], P) == pytest.approx(0.90)


def test_rbo_uneven_lengths() -> None:
    # L = [a, b], S = [b]: X_1 = 0, X_2 = 1, X_s = 0 -> (0.1/0.9)(1/2 * 0.81) + (1/2) * 0.81 = 0.045 + 0.405
    assert m.rbo_ext(["a", "b"], ["b"], P) == pytest.approx(0.45)
    assert m.rbo_ext(["b"], ["a", "b"], P) == pytest.approx(0.45)


def test_rbo_same_top_item_of_uneven_lists() -> None:
    # S = [a], L = [a, b]: X_1 = 1, X_2 = 1, X_s = 1, s = 1, l = 2
    # (0.1/0.9) * (1 * 0.9 + 1/2 * 0.81 + 1 * (2-1)/(1*2) * 0.81) + ((1-1)/2 + 1/1) * 0.81
    # = (0.1/0.9) * 1.71 + 0.81 = 0.19 + 0.81 = 1.0
    assert m.rbo_ext(["a"], ["a", "b"], P) == pytest.approx(1.0)


def test_rbo_empty_list_conventions() -> None:
    assert m.rbo_ext([], [], P) == 1.0
    assert m.rbo_ext([], ["a"], P) == 0.0
    assert m.rbo_ext([], [], P, both_empty=None) is None
    assert m.rbo_ext(["a"], [], P, one_empty=None) is None


def test_rbo_rejects_repeats_and_bad_p() -> None:
    with pytest.raises(ValueError):
        m.rbo_ext(["a", "a"], ["a"], P)
    with pytest.raises(ValueError):
        m.rbo_ext(["a"], ["a"], 1.0)


def test_rbo_rows_match_the_scalar_and_conventions() -> None:
    # rows: identical, swapped pair, uneven, both empty, one empty (codes: 0 = not harmful)
    a = np.array([[3, 2, 1], [0, 1, 2], [0, 1, 2], [0, 0, 0], [0, 0, 0]], dtype=float)
    b = np.array([[3, 2, 1], [0, 2, 1], [0, 0, 1], [0, 0, 0], [1, 0, 0]], dtype=float)
    rows = m.rbo_ext_rows(m.harmful_positions(a), m.harmful_positions(b), P)
    # lists (most harmful first): [0,1,2]/[0,1,2]; [2,1]/[1,2]; [2,1]/[2]; []/[]; []/[0]
    assert rows == pytest.approx([1.0, 0.9, 1.0, 1.0, 0.0])
    dropped = m.rbo_ext_rows(m.harmful_positions(a), m.harmful_positions(b), P, both_empty=None, one_empty=None)
    assert np.isnan(dropped[3]) and np.isnan(dropped[4])
    assert dropped[:3] == pytest.approx([1.0, 0.9, 1.0])


def test_rbo_matches_the_rbo_package() -> None:
    rbo = pytest.importorskip("rbo", reason="scripts/test.sh installs rbo==0.1.3 (--no-deps) for this check")
    rng = np.random.default_rng(7)
    for _ in range(300):
        a = [int(x) for x in rng.permutation(8)[: rng.integers(0, 7)]]
        b = [int(x) for x in rng.permutation(8)[: rng.integers(0, 7)]]
        expected = rbo.RankingSimilarity(a, b).rbo_ext(p=P)
        assert m.rbo_ext(a, b, P) == pytest.approx(expected, abs=1e-12)
        # and the row-wise form, with the lists written as codes over 8 outputs
        ca = np.zeros((1, 8))
        cb = np.zeros((1, 8))
        for pos, item in enumerate(a):
            ca[0, item] = len(a) - pos
        for pos, item in enumerate(b):
            cb[0, item] = len(b) - pos
        assert m.rbo_ext_rows(m.harmful_positions(ca), m.harmful_positions(cb), P)[0] == pytest.approx(expected)


# -- Kendall tau-b and Spearman -------------------------------------------------------------------
def test_kendall_perfect_inverted_ties_and_undefined() -> None:
    a = np.array([[1, 2, 3], [1, 2, 3], [0, 1, 2], [0, 0, 0]], dtype=float)
    b = np.array([[1, 2, 3], [3, 2, 1], [0, 0, 1], [1, 2, 3]], dtype=float)
    tau = m.kendall_tau_b_rows(a, b)
    # row 3: pairs (1,2): a untied, b tied; (1,3): concordant; (2,3): concordant
    # S = 2, untied a = 3, untied b = 2 -> 2 / sqrt(6)
    assert tau[:3] == pytest.approx([1.0, -1.0, 2 / math.sqrt(6)])
    assert np.isnan(tau[3])  # a gives every output the same code


def test_kendall_matches_scipy_with_missing_outputs() -> None:
    from scipy.stats import kendalltau

    a = np.array([[2, np.nan, 1, 3], [1, 1, 2, 0]], dtype=float)
    b = np.array([[1, 3, 2, 3], [2, 1, 2, 0]], dtype=float)
    tau = m.kendall_tau_b_rows(a, b)
    assert tau[0] == pytest.approx(kendalltau([2, 1, 3], [1, 2, 3]).statistic)
    assert tau[1] == pytest.approx(kendalltau([1, 1, 2, 0], [2, 1, 2, 0]).statistic)


def test_spearman_with_ties() -> None:
    a = np.array([[0, 1, 2], [1, 2, 3], [1, 1, 1]], dtype=float)
    b = np.array([[0, 0, 1], [3, 2, 1], [1, 2, 3]], dtype=float)
    rho = m.spearman_rows(a, b)
    # row 1: ranks a = 1,2,3; b = 1.5,1.5,3 -> cov 1.5 / sqrt(2 * 1.5) = sqrt(3)/2
    assert rho[:2] == pytest.approx([math.sqrt(3) / 2, -1.0])
    assert np.isnan(rho[2])


# -- Krippendorff's alpha -------------------------------------------------------------------------
# Two raters, four units: (1,1), (2,2), (3,3), (1,2).
# Coincidences: o11 = o22 = o33 = 2, o12 = o21 = 1; n1 = 3, n2 = 3, n3 = 2, n = 8.
# nominal:  Do = 2, De = 64 - (9+9+4) = 42              -> 1 - 7 * 2 / 42 = 2/3
# interval: Do = 2, De = 2 (9*1 + 6*4 + 6*1) = 78       -> 1 - 14 / 78
# ordinal:  d12 = (6 - 3)^2 = 9, d13 = (8 - 2.5)^2 = 30.25, d23 = (5 - 2.5)^2 = 6.25
#           Do = 2 * 9 = 18, De = 2 (9*9 + 6*30.25 + 6*6.25) = 600 -> 1 - 7 * 18 / 600 = 0.79
ALPHA_DATA = np.array([[1, 2, 3, 1], [1, 2, 3, 2]], dtype=float)
ALPHA_EXPECTED = {"nominal": 2 / 3, "interval": 1 - 14 / 78, "ordinal": 0.79}


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_by_hand_and_with_the_package(level: str) -> None:
    values = np.array([1.0, 2.0, 3.0])
    counts = np.zeros((4, 3))
    for r in range(2):
        for u in range(4):
            counts[u, int(ALPHA_DATA[r, u]) - 1] += 1
    o = m.coincidences(counts).sum(axis=0)
    assert o == pytest.approx(np.array([[2, 1, 0], [1, 2, 0], [0, 0, 2]]))
    assert m.alpha_from_coincidences(o, level, values) == pytest.approx(ALPHA_EXPECTED[level])
    assert m.krippendorff_alpha(ALPHA_DATA, level) == pytest.approx(ALPHA_EXPECTED[level])


def test_alpha_perfect_and_undefined() -> None:
    perfect = np.array([[0, 1, 2, 3], [0, 1, 2, 3]], dtype=float)
    assert m.krippendorff_alpha(perfect, "ordinal") == pytest.approx(1.0)
    assert math.isnan(m.krippendorff_alpha(np.array([[1, 1], [1, 1]], dtype=float), "nominal"))
    # a stack of coincidence matrices gives one alpha each
    stack = np.array([[[2, 0], [0, 2]], [[0, 2], [2, 0]]], dtype=float)
    # second: every unit disagrees: o = [[0,2],[2,0]], n = 4, Do = 4, De = 2*2*2 = 8 -> 1 - 3*4/8 = -0.5
    assert m.alpha_from_coincidences(stack, "nominal", [0, 1]) == pytest.approx([1.0, -0.5])


def test_alpha_with_missing_values_matches_the_package() -> None:
    kd = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(3)
    data = rng.integers(0, 4, (4, 30)).astype(float)
    data[rng.random(data.shape) < 0.25] = np.nan
    values = np.unique(data[~np.isnan(data)])
    counts = np.stack([(data == v).sum(axis=0) for v in values], axis=1).astype(float)
    o = m.coincidences(counts).sum(axis=0)
    for level in ("nominal", "ordinal", "interval"):
        expected = kd.alpha(reliability_data=data, level_of_measurement=level, value_domain=values)
        assert m.alpha_from_coincidences(o, level, values) == pytest.approx(expected)


# -- kappas and Holm ------------------------------------------------------------------------------
def test_cohen_kappa_by_hand() -> None:
    # po = 35/50 = 0.7; pe = (25*30 + 25*20) / 2500 = 0.5 -> kappa = 0.2 / 0.5 = 0.4
    assert m.cohen_kappa_from_confusion(np.array([[20, 5], [10, 15]])) == pytest.approx(0.4)
    assert m.cohen_kappa_from_confusion(np.array([[3, 0], [0, 7]])) == pytest.approx(1.0)
    assert math.isnan(m.cohen_kappa_from_confusion(np.array([[5, 0], [0, 0]])))  # one category only


def test_fleiss_kappa_by_hand() -> None:
    # units [2,0], [0,2], [1,1] with m = 2: P_u = 1, 1, 0 -> P = 2/3; p = (1/2, 1/2) -> Pe = 1/2
    # kappa = (2/3 - 1/2) / (1/2) = 1/3
    stats = m.fleiss_unit_stats(np.array([[2, 0], [0, 2], [1, 1]], dtype=float)).sum(axis=0)
    assert m.fleiss_from_stats(stats) == pytest.approx(1 / 3)


def test_holm_adjustment() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3*0.01 = 0.03, max(0.03, 2*0.03) = 0.06, max(0.06, 1*0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])


# -- bootstrap ------------------------------------------------------------------------------------
def test_resampled_sums_keep_the_total_count_and_are_seeded() -> None:
    stats = np.column_stack([np.arange(10, dtype=float), np.ones(10)])
    sums = resampled_sums(stats, 57, seed_for(0, "a", "b"))
    assert sums.shape == (57, 2)
    assert np.all(sums[:, 1] == 10)  # every resample draws 10 items
    assert 0 <= sums[:, 0].min() and sums[:, 0].max() <= 90
    again = resampled_sums(stats, 57, seed_for(0, "a", "b"))
    assert np.array_equal(sums, again)
    assert not np.array_equal(sums, resampled_sums(stats, 57, seed_for(1, "a", "b")))


def test_percentile_interval_ignores_undefined_resamples() -> None:
    values = np.concatenate([np.arange(101, dtype=float), [np.nan, np.nan]])
    assert percentile_interval(values) == pytest.approx((2.5, 97.5))
    assert percentile_interval(np.array([np.nan])) == (None, None)
