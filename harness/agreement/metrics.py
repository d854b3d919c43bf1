"""Pure agreement metrics: extrapolated RBO, Kendall tau-b, Spearman, Krippendorff's alpha, Cohen's and Fleiss' kappa.

No I/O and no pandas: numpy arrays in, numbers out. Row-wise ("batch") forms take one row per
item so that 100,000 items are scored without a Python loop, and every metric that is not a plain
mean over items is written as a sum of per-item statistics plus a function of that sum, so the
bootstrap (harness.agreement.bootstrap) resamples items by summing rows.

Conventions (also printed by `harness agree --help`):

- RBO is the *extrapolated* Rank-Biased Overlap, RBO_ext of Webber, Moffat & Zobel (2010), eq. 32,
  for lists of uneven length, p = 0.9 by default (weight of the top d ranks = 1 - p^d). It equals
  `rbo.RankingSimilarity(a, b).rbo_ext(p)` of the `rbo` package (checked in the tests); we do not
  depend on that package because its metadata pins numpy<2. A list holds the outputs a rater judged
  harmful (code > 0), most harmful first; tied codes are broken by output order. Both lists empty
  (both raters: nothing harmful) scores `both_empty` (default 1.0: full agreement) and one empty
  list scores `one_empty` (default 0.0: no overlap); None drops such items instead.
- Kendall tau-b and Spearman rho are computed per item over the outputs both raters rated, and are
  undefined (NaN, left out of the average) when either rater gives all outputs the same code.
- Krippendorff's alpha follows Krippendorff (2011) through the coincidence matrix; the point value is
  cross-checked against the `krippendorff` package. Alpha is undefined (NaN) when all values are equal.
- Cohen's kappa is undefined (NaN) when expected agreement is 1 (a single category everywhere).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

# Metric names as they appear in `metric` of agreement rows, with what each one measures.
METRICS: dict[str, str] = {
    "rbo": "extrapolated Rank-Biased Overlap of the harmful outputs, most harmful first, mean over items",
    "alpha_nominal": "Krippendorff's alpha, nominal level, over every output both rated",
    "alpha_ordinal": "Krippendorff's alpha, ordinal level (codes 0 = N/A < 1 < ... < k)",
    "alpha_interval": "Krippendorff's alpha, interval level",
    "kendall_tau_b": "Kendall tau-b per item over its outputs, mean over items where defined",
    "spearman": "Spearman rho per item over its outputs, mean over items where defined",
    "exact_match": "share of items ranked identically (rank, pairwise) or of outputs labelled identically",
    "cohen_kappa": "Cohen's kappa: on harmful yes/no for rank and score tasks, on the label otherwise",
    "fleiss_kappa": "Fleiss' kappa among one rater's annotators (a == b), outputs rated by the usual number of them",
}


# -- RBO ------------------------------------------------------------------------------------------
def rbo_ext(a: Sequence[Hashable], b: Sequence[Hashable], p: float = 0.9,
            both_empty: float | None = 1.0, one_empty: float | None = 0.0) -> float | None:
    """Extrapolated RBO (Webber et al. 2010, eq. 32) of two rankings without repeated items."""
    if not 0 < p < 1:
        raise ValueError(f"RBO persistence p must be in (0, 1), got {p}")
    if len(set(a)) != len(a) or len(set(b)) != len(b):
        raise ValueError("RBO lists must not repeat an item")
    if not a and not b:
        return both_empty
    if not a or not b:
        return one_empty
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    s, ell = len(short), len(long_)
    short_set = set(short)
    x = [0] * (ell + 1)  # x[d] = overlap of short[:min(d, s)] and long[:d]
    seen_short: set[Hashable] = set()
    seen_long: set[Hashable] = set()
    for d in range(1, ell + 1):
        if d <= s:
            seen_short.add(short[d - 1])
        seen_long.add(long_[d - 1])
        x[d] = len(seen_short & seen_long) if d <= s else len(short_set & seen_long)
    x_s, x_l = x[s], x[ell]
    total = sum(x[d] / d * p**d for d in range(1, ell + 1))
    total += sum(x_s * (d - s) / (s * d) * p**d for d in range(s + 1, ell + 1))
    return (1 - p) / p * total + ((x_l - x_s) / ell + x_s / s) * p**ell


def harmful_positions(codes: np.ndarray) -> np.ndarray:
    """Per row, each output's 0-based position in the harmful list (code > 0, most harmful first).

    `codes` is items x outputs with NaN where the output is absent. Outputs not in the list get
    +inf. Ties are broken by column order (the earlier output first).
    """
    n, k = codes.shape
    harmful = np.nan_to_num(codes, nan=0.0) > 0
    pos = np.full((n, k), np.inf)
    if k == 0:
        return pos
    c = np.where(harmful, codes, -np.inf)
    ahead = np.zeros((n, k))
    for j in range(k):
        for i in range(k):
            if i == j:
                continue
            before = (c[:, i] > c[:, j]) | ((c[:, i] == c[:, j]) & (i < j))
            ahead[:, j] += before & harmful[:, i]
    pos[harmful] = ahead[harmful]
    return pos


def rbo_ext_rows(pos_a: np.ndarray, pos_b: np.ndarray, p: float = 0.9,
                 both_empty: float | None = 1.0, one_empty: float | None = 0.0) -> np.ndarray:
    """Row-wise RBO_ext from `harmful_positions` matrices; NaN where a convention drops the row."""
    if not 0 < p < 1:
        raise ValueError(f"RBO persistence p must be in (0, 1), got {p}")
    n, k = pos_a.shape
    len_a = np.isfinite(pos_a).sum(axis=1)
    len_b = np.isfinite(pos_b).sum(axis=1)
    s = np.minimum(len_a, len_b)
    ell = np.maximum(len_a, len_b)
    # x[:, d] = |A[:d] & B[:d]|; positions beyond a list's length are +inf, so A[:d] is A[:min(d, |A|)].
    x = np.zeros((n, k + 1))
    for d in range(1, k + 1):
        x[:, d] = ((pos_a < d) & (pos_b < d)).sum(axis=1)
    rows = np.arange(n)
    x_s = x[rows, s]
    x_l = x[rows, ell]
    total = np.zeros(n)
    for d in range(1, k + 1):
        pd_ = p**d
        total += np.where(d <= ell, x[:, d] / d * pd_, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            total += np.where((d > s) & (d <= ell) & (s > 0), x_s * (d - s) / (s * d) * pd_, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = ((x_l - x_s) / ell + x_s / s) * np.power(p, ell)
        value = (1 - p) / p * total + tail
    both = (len_a == 0) & (len_b == 0)
    one = (s == 0) & ~both
    value = np.where(both, np.nan if both_empty is None else both_empty, value)
    value = np.where(one, np.nan if one_empty is None else one_empty, value)
    return value


# -- rank correlations per item -------------------------------------------------------------------
def kendall_tau_b_rows(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """Row-wise Kendall tau-b over the columns present (non-NaN) in both rows; NaN when undefined."""
    n, k = xa.shape
    s = np.zeros(n)
    untied_a = np.zeros(n)
    untied_b = np.zeros(n)
    present = ~np.isnan(xa) & ~np.isnan(xb)
    for i in range(k):
        for j in range(i + 1, k):
            both = present[:, i] & present[:, j]
            sa = np.where(both, np.sign(np.nan_to_num(xa[:, i] - xa[:, j])), 0.0)
            sb = np.where(both, np.sign(np.nan_to_num(xb[:, i] - xb[:, j])), 0.0)
            s += sa * sb
            untied_a += sa != 0
            untied_b += sb != 0
    denom = np.sqrt(untied_a * untied_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, s / denom, np.nan)


def _average_ranks_rows(x: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged) of each row's present values; NaN elsewhere."""
    n, k = x.shape
    ranks = np.full((n, k), np.nan)
    for i in range(k):
        less = np.zeros(n)
        equal = np.zeros(n)
        for j in range(k):
            valid = present[:, j] & present[:, i]
            less += valid & (x[:, j] < x[:, i])
            equal += valid & (x[:, j] == x[:, i])
        ranks[:, i] = np.where(present[:, i], 1 + less + (equal - 1) / 2, np.nan)
    return ranks


def spearman_rows(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """Row-wise Spearman rho (Pearson on average ranks) over columns present in both; NaN when undefined."""
    present = ~np.isnan(xa) & ~np.isnan(xb)
    ra = _average_ranks_rows(np.nan_to_num(xa), present)
    rb = _average_ranks_rows(np.nan_to_num(xb), present)
    m = present.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ma = np.nansum(ra, axis=1) / m
        mb = np.nansum(rb, axis=1) / m
        da = np.where(present, ra - ma[:, None], 0.0)
        db = np.where(present, rb - mb[:, None], 0.0)
        cov = (da * db).sum(axis=1)
        var = np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
        return np.where((m >= 2) & (var > 1e-12), cov / var, np.nan)


# -- Krippendorff's alpha -------------------------------------------------------------------------
def coincidences(counts: np.ndarray) -> np.ndarray:
    """Per-unit coincidence matrices from value counts (units x V): (n n^T - diag n) / (m - 1).

    Units with fewer than two values are not pairable and contribute zeros.
    """
    m = counts.sum(axis=1)
    outer = counts[:, :, None] * counts[:, None, :]
    idx = np.arange(counts.shape[1])
    outer[:, idx, idx] -= counts
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(m >= 2, 1.0 / (m - 1), 0.0)
    return outer * scale[:, None, None]


def _delta(level: str, values: np.ndarray, marginals: np.ndarray) -> np.ndarray:
    """Squared difference function delta^2(c, k); `marginals` is (..., V) for the ordinal level."""
    v = len(values)
    if level == "nominal":
        return (1.0 - np.eye(v))[None] if marginals.ndim == 2 else 1.0 - np.eye(v)
    if level == "interval":
        d = (values[:, None] - values[None, :]) ** 2
        return d[None] if marginals.ndim == 2 else d
    if level == "ordinal":
        cum = np.cumsum(marginals, axis=-1)
        lo = np.minimum.outer(np.arange(v), np.arange(v))
        hi = np.maximum.outer(np.arange(v), np.arange(v))
        between = cum[..., hi] - cum[..., lo] + marginals[..., lo]
        half = (marginals[..., :, None] + marginals[..., None, :]) / 2
        return (between - half) ** 2
    raise ValueError(f"unknown level of measurement '{level}': use nominal, ordinal or interval")


def alpha_from_coincidences(o: np.ndarray, level: str, values: Sequence[float] | np.ndarray) -> np.ndarray | float:
    """Krippendorff's alpha from a coincidence matrix (V x V) or a stack of them (B x V x V)."""
    o = np.asarray(o, dtype=float)
    single = o.ndim == 2
    o3 = o[None] if single else o
    vals = np.asarray(values, dtype=float)
    n_c = o3.sum(axis=2)
    n = n_c.sum(axis=1)
    delta = _delta(level, vals, n_c)
    observed = (o3 * delta).sum(axis=(1, 2))
    expected = (n_c[:, :, None] * n_c[:, None, :] * delta).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(expected > 0, 1.0 - (n - 1) * observed / expected, np.nan)
    return float(alpha[0]) if single else alpha


def krippendorff_alpha(reliability: np.ndarray, level: str) -> float:
    """Alpha of a raters x units matrix (NaN = missing) with the `krippendorff` package; NaN if undefined."""
    from harness.errors import require

    kd = require("krippendorff", "analysis", "Krippendorff's alpha")
    data = np.asarray(reliability, dtype=float)
    values = np.unique(data[~np.isnan(data)])
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    if len(values) < 2 or pairable.sum() == 0:
        return math.nan
    return float(kd.alpha(reliability_data=data, level_of_measurement=level, value_domain=values))


# -- kappas ---------------------------------------------------------------------------------------
def cohen_kappa_from_confusion(c: np.ndarray) -> np.ndarray | float:
    """Cohen's kappa from a confusion matrix (C x C, rows rater a) or a stack (B x C x C)."""
    c = np.asarray(c, dtype=float)
    single = c.ndim == 2
    c3 = c[None] if single else c
    total = c3.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        po = np.trace(c3, axis1=1, axis2=2) / total
        pe = (c3.sum(axis=2) * c3.sum(axis=1)).sum(axis=1) / total**2
        kappa = np.where((total > 0) & (pe < 1 - 1e-12), (po - pe) / (1 - pe), np.nan)
    return float(kappa[0]) if single else kappa


def fleiss_unit_stats(counts: np.ndarray) -> np.ndarray:
    """Per-unit Fleiss statistics from category counts (units x C, every row summing to m).

    Columns: P_u = (sum n^2 - m) / (m (m - 1)), 1 (the unit), then the C counts.
    """
    m = counts.sum(axis=1)
    p_u = ((counts**2).sum(axis=1) - m) / (m * (m - 1))
    return np.column_stack([p_u, np.ones(len(counts)), counts])


def fleiss_from_stats(stats: np.ndarray) -> np.ndarray | float:
    """Fleiss' kappa from summed `fleiss_unit_stats` (vector, or B x columns)."""
    s = np.asarray(stats, dtype=float)
    single = s.ndim == 1
    s2 = s[None] if single else s
    units = s2[:, 1]
    cat = s2[:, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        p_bar = s2[:, 0] / units
        p_c = cat / cat.sum(axis=1, keepdims=True)
        pe = (p_c**2).sum(axis=1)
        kappa = np.where((units > 0) & (pe < 1 - 1e-12), (p_bar - pe) / (1 - pe), np.nan)
    return float(kappa[0]) if single else kappa
