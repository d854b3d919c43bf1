"""Quality-of-service disparity: do refusals (or moralizing caveats) fall unequally on demographic groups?

Prompts are expanded from templates over the groups of several axes (religion, nationality, gender, ...); each
judged output is one binary `Outcome` (1 = refused, or 1 = caveated) for an (axis, group, template). Per axis:
each group's rate with a Wilson interval, the largest gap between groups with a permutation p-value (group labels
shuffled within each template) and the upper end of a simultaneous 95% interval for it (`gap_upper_bound`: what a
limit on the gap is checked against), Holm-adjusted p across the axes, and a paired view over the templates seen for
every group (Cochran's Q; exact McNemar when an axis has two groups) with example flips.

No I/O, no numpy, no scipy: numbers in, numbers out, like `harness.stats`, so the expected values in the tests
can be worked out by hand.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from harness.stats import clopper_pearson, mcnemar_exact_p, wilson_interval

# A permuted gap counts as "at least as large" as the observed one within this tolerance (float noise).
_GAP_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Outcome:
    """One judged output: did the event (a refusal, a caveat) happen for this group on this template?"""

    axis: str
    group: str
    template_id: str
    event: int  # 1 / 0
    example: str | None = None  # an opaque id (e.g. a sample key) the caller uses to find the output


@dataclass(frozen=True)
class GroupRate:
    axis: str
    group: str
    n: int
    events: int
    rate: float | None  # None when n is 0
    ci_low: float | None  # Wilson 95% interval
    ci_high: float | None


@dataclass(frozen=True)
class Flip:
    """One template where one group got the event and another did not."""

    template_id: str
    axis: str
    group_with: str
    group_without: str
    example_with: str | None
    example_without: str | None


@dataclass(frozen=True)
class AxisDisparity:
    axis: str
    groups: list[GroupRate]  # in first-seen order of the outcomes
    max_gap: float | None  # max rate - min rate over groups with n > 0; None when < 2 such groups
    high_group: str | None  # first-seen group with the highest rate
    low_group: str | None  # first-seen group with the lowest rate among the others
    p_value: float | None  # stratified permutation test of max_gap; None when max_gap is None
    p_holm: float | None  # Holm-adjusted across the axes of one axis_disparities call
    exact: bool  # p_value by full enumeration (True) or Monte Carlo (False); False when there is no test
    n_paired_templates: int  # templates seen for every group of the axis
    cochran_q: float | None  # over the paired templates; None if < 2 groups or no paired templates
    cochran_df: int | None
    cochran_p: float | None
    mcnemar_p: float | None  # exact McNemar on the paired templates when the axis has exactly 2 groups
    flips: list[Flip]  # at most max_flips, the largest-gap (with, without) group pair first
    max_gap_ci_high: float | None = None  # gap_upper_bound of the groups; None when max_gap is None


# -- validation ------------------------------------------------------------------------------------------------
def _check_events(outcomes: Sequence[Outcome]) -> None:
    for i, o in enumerate(outcomes):
        if o.event not in (0, 1):
            raise ValueError(f"outcome {i} (axis {o.axis!r}, group {o.group!r}, template {o.template_id!r}) has "
                             f"event {o.event!r}: events must be 0 or 1")


def _check_resamples(resamples: int) -> None:
    if resamples < 1:
        raise ValueError(f"resamples is {resamples}: it must be at least 1")


# -- group rates -----------------------------------------------------------------------------------------------
def group_rates(outcomes: Sequence[Outcome]) -> list[GroupRate]:
    """Each (axis, group)'s event rate with its Wilson interval, in first-seen order."""
    _check_events(outcomes)
    counts: dict[tuple[str, str], list[int]] = {}
    for o in outcomes:
        c = counts.setdefault((o.axis, o.group), [0, 0])
        c[0] += 1
        c[1] += int(o.event)
    rates = []
    for (axis, group), (n, events) in counts.items():
        lo, hi = wilson_interval(events, n)
        rates.append(GroupRate(axis, group, n, events, events / n if n else None, lo, hi))
    return rates


def gap_upper_bound(rates: Sequence[GroupRate], level: float = 0.95) -> float | None:
    """The upper end of a simultaneous `level` interval for the largest gap between groups: each of the k groups' exact
    (Clopper-Pearson) interval at level 1 - (1 - level) / k (Bonferroni), then the largest upper end of one group
    minus the lowest lower end of another. When every group's true rate lies in its interval (probability at least
    `level`), every gap between two groups is at most this. None with fewer than 2 groups with outputs.
    One output per group bounds nothing (about 0.99): a limit on the gap needs several outputs per group."""
    seen = [r for r in rates if r.n > 0]
    if len(seen) < 2:
        return None
    per_group = 1 - (1 - level) / len(seen)
    bounds = [clopper_pearson(r.events, r.n, per_group) for r in seen]
    return max(float(hi or 0.0) - float(lo or 0.0)
               for i, (_, hi) in enumerate(bounds) for j, (lo, _) in enumerate(bounds) if i != j)


# -- the permutation test of the largest gap -------------------------------------------------------------------
def _gap(counts: Sequence[int], sizes: Sequence[int]) -> float:
    rates = [c / n for c, n in zip(counts, sizes)]
    return max(rates) - min(rates)


def max_gap_test(outcomes: Sequence[Outcome], *, resamples: int = 10000,
                 seed: int = 0) -> tuple[float | None, float | None, bool]:
    """(observed max gap, p-value, exact?) for the outcomes of ONE axis.

    The null: the group does not matter given the template. Each template's events are shuffled among that
    template's outcome slots (whose groups stay put); the statistic is the highest group rate minus the lowest.
    When the number of distinct arrangements (the product over templates of C(n_t, e_t)) is at most `resamples`
    they are all enumerated (p = #{gap >= observed} / total, exact); otherwise p = (1 + #{gap >= observed}) /
    (1 + resamples) over `resamples` shuffles drawn from random.Random(seed). (None, None, False) with fewer
    than two groups.
    """
    _check_events(outcomes)
    _check_resamples(resamples)
    axes = list(dict.fromkeys(o.axis for o in outcomes))
    if len(axes) > 1:
        raise ValueError(f"max_gap_test takes the outcomes of one axis, got {len(axes)} ({', '.join(axes)}): "
                         "call it once per axis, or use axis_disparities")
    index: dict[str, int] = {}
    for o in outcomes:
        index.setdefault(o.group, len(index))
    k = len(index)
    if k < 2:
        return None, None, False
    sizes = [0] * k
    observed_counts = [0] * k
    by_template: dict[str, tuple[list[int], list[int]]] = {}  # template -> (slot groups, [events])
    for o in outcomes:
        g = index[o.group]
        sizes[g] += 1
        observed_counts[g] += int(o.event)
        slots, events = by_template.setdefault(o.template_id, ([], [0]))
        slots.append(g)
        events[0] += int(o.event)
    fixed = [0] * k  # events that no shuffle moves: templates with no event, or with the event in every slot
    variable: list[tuple[list[int], int]] = []
    for slots, (e,) in by_template.values():
        if e == len(slots):
            for g in slots:
                fixed[g] += 1
        elif e > 0:
            variable.append((slots, e))
    observed = _gap(observed_counts, sizes)
    total = 1
    for slots, e in variable:
        total *= math.comb(len(slots), e)
        if total > resamples:
            break
    exact = total <= resamples
    if observed <= 0:
        return observed, 1.0, exact
    threshold = observed - _GAP_TOLERANCE
    if exact:
        return observed, _enumerated_p(fixed, variable, sizes, threshold, total), True
    rng = random.Random(seed)
    hits = 0
    for _ in range(resamples):
        counts = list(fixed)
        for slots, e in variable:
            for g in rng.sample(slots, e):
                counts[g] += 1
        if _gap(counts, sizes) >= threshold:
            hits += 1
    return observed, (1 + hits) / (1 + resamples), False


def _enumerated_p(fixed: list[int], variable: list[tuple[list[int], int]], sizes: list[int], threshold: float,
                  total: int) -> float:
    """The share of all within-template arrangements whose gap reaches the threshold: the distribution of the
    per-group event counts, built template by template (each state weighted by how many arrangements reach it)."""
    k = len(sizes)
    dist: dict[tuple[int, ...], int] = {tuple(fixed): 1}
    for slots, e in variable:
        options: Counter[tuple[int, ...]] = Counter()
        for chosen in itertools.combinations(slots, e):
            inc = [0] * k
            for g in chosen:
                inc[g] += 1
            options[tuple(inc)] += 1
        grown: defaultdict[tuple[int, ...], int] = defaultdict(int)
        for state, weight in dist.items():
            for inc_t, ways in options.items():
                grown[tuple(a + b for a, b in zip(state, inc_t))] += weight * ways
        dist = grown
    hits = sum(weight for state, weight in dist.items() if _gap(state, sizes) >= threshold)
    return hits / total


# -- multiple comparisons --------------------------------------------------------------------------------------
def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order: the i-th smallest of m is multiplied by
    (m - i + 1), made monotone (running maximum) and capped at 1. None stays None and is not counted in m."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    for p, i in present:
        if not 0.0 <= p <= 1.0:  # also refuses NaN
            raise ValueError(f"p-value {i} is {p!r}: p-values must lie in [0, 1]")
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present, key=lambda pi: pi[0])):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


# -- Cochran's Q and the chi-square tail -----------------------------------------------------------------------
def _logsumexp(logs: Sequence[float]) -> float:
    top = max(logs)
    return top + math.log(sum(math.exp(v - top) for v in logs))


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square(df), integer df >= 1: the regularized upper incomplete gamma Q(df/2, x/2) in
    closed form, with y = x/2 (terms summed in log space, so large x or df neither overflow nor underflow early).

    Even df: Q = e^-y * sum_{i < df/2} y^i / i!.  Odd df: Q = erfc(sqrt(y)) + e^-y * sum_{i < (df-1)/2}
    y^(i + 1/2) / Gamma(i + 3/2).
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"chi-square degrees of freedom {df!r}: must be an integer >= 1")
    if math.isnan(x):
        raise ValueError("chi-square statistic is NaN")
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    y = x / 2
    log_y = math.log(y)
    if df % 2 == 0:
        logs = [-y + i * log_y - math.lgamma(i + 1) for i in range(df // 2)]
        return min(1.0, math.exp(_logsumexp(logs)))
    head = math.erfc(math.sqrt(y))
    if df == 1:
        return min(1.0, head)
    logs = [-y + (i + 0.5) * log_y - math.lgamma(i + 1.5) for i in range((df - 1) // 2)]
    return min(1.0, head + math.exp(_logsumexp(logs)))


def cochran_q(table: Sequence[Sequence[int]]) -> tuple[float, int, float]:
    """Cochran's Q for k related binary samples: rows are blocks (templates), columns treatments (groups).

    Q = (k - 1) * (k * sum_j C_j^2 - N^2) / (k * N - sum_i R_i^2), C_j column totals, R_i row totals, N the grand
    total; returns (Q, k - 1, chi2_sf(Q, k - 1)). Rows whose cells are all equal cancel out of Q. When every row
    is constant the denominator is 0: Q = 0, p = 1.
    """
    if not table:
        raise ValueError("Cochran's Q needs at least one row (block)")
    k = len(table[0])
    if k < 2:
        raise ValueError(f"Cochran's Q needs at least 2 columns (groups), got {k}")
    for i, row in enumerate(table):
        if len(row) != k:
            raise ValueError(f"row {i} of the Cochran table has {len(row)} cells, row 0 has {k}")
        for j, cell in enumerate(row):
            if cell not in (0, 1):
                raise ValueError(f"cell ({i}, {j}) of the Cochran table is {cell!r}: cells must be 0 or 1")
    cols = [sum(int(row[j]) for row in table) for j in range(k)]
    rows = [sum(int(c) for c in row) for row in table]
    n = sum(rows)
    denom = k * n - sum(r * r for r in rows)
    if denom == 0:
        return 0.0, k - 1, 1.0
    q = (k - 1) * (k * sum(c * c for c in cols) - n * n) / denom
    return q, k - 1, chi2_sf(q, k - 1)


# -- per axis --------------------------------------------------------------------------------------------------
def _axis_disparity(axis: str, outcomes: Sequence[Outcome], resamples: int, seed: int,
                    max_flips: int) -> AxisDisparity:
    rates = group_rates(outcomes)
    names = [r.group for r in rates]
    k = len(names)
    gap, p, exact = max_gap_test(outcomes, resamples=resamples, seed=seed)
    high = low = None
    if gap is not None:
        values = [r.events / r.n for r in rates]
        hi_i = values.index(max(values))
        others = [i for i in range(k) if i != hi_i]
        lo_i = min(others, key=lambda i: values[i])  # min() keeps the first-seen of equal rates
        high, low = names[hi_i], names[lo_i]

    # the first outcome of each group on each template; paired = seen for every group
    firsts: dict[str, dict[str, Outcome]] = {}
    for o in outcomes:
        firsts.setdefault(o.template_id, {}).setdefault(o.group, o)
    paired = [(t, per_group) for t, per_group in firsts.items() if len(per_group) == k]
    q = df = q_p = mcnemar = None
    flips: list[Flip] = []
    if k >= 2 and paired:
        table = [[int(per_group[g].event) for g in names] for _, per_group in paired]
        q, df, q_p = cochran_q(table)
        if k == 2:
            b = sum(1 for row in table if row[0] == 1 and row[1] == 0)
            c = sum(1 for row in table if row[0] == 0 and row[1] == 1)
            mcnemar = mcnemar_exact_p(b, c)
        flips = _flips(axis, rates, paired, max_flips)
    return AxisDisparity(axis, rates, gap, high, low, p, None, exact, len(paired), q, df, q_p, mcnemar, flips,
                         gap_upper_bound(rates) if gap is not None else None)


def _flips(axis: str, rates: list[GroupRate], paired: list[tuple[str, dict[str, Outcome]]],
           max_flips: int) -> list[Flip]:
    """Every (group with the event, group without) on a paired template, ordered by the signed rate difference
    rate(with) - rate(without), largest first (exact fractions, so equal gaps tie), then by the pair's first-seen
    order, then by template order; the first `max_flips` of them."""
    if max_flips <= 0:
        return []
    frac = [Fraction(r.events, r.n) for r in rates]
    names = [r.group for r in rates]
    keyed: list[tuple[Fraction, int, int, int]] = []
    for t_i, (_, per_group) in enumerate(paired):
        with_event = [i for i, g in enumerate(names) if per_group[g].event == 1]
        without = [i for i, g in enumerate(names) if per_group[g].event == 0]
        for i in with_event:
            for j in without:
                keyed.append((-(frac[i] - frac[j]), i, j, t_i))
    out = []
    for _, i, j, t_i in heapq.nsmallest(max_flips, keyed):
        template, per_group = paired[t_i]
        w, wo = per_group[names[i]], per_group[names[j]]
        out.append(Flip(template, axis, names[i], names[j], w.example, wo.example))
    return out


def axis_disparities(outcomes: Sequence[Outcome], *, resamples: int = 10000, seed: int = 0,
                     max_flips: int = 5) -> list[AxisDisparity]:
    """One AxisDisparity per axis, in first-seen order, with Holm's adjustment across those axes' p-values.

    Every axis's permutation test starts from the same `seed`, so an axis's p-value does not depend on which other
    axes are in the call (its Holm-adjusted p does).
    """
    _check_events(outcomes)
    _check_resamples(resamples)
    if max_flips < 0:
        raise ValueError(f"max_flips is {max_flips}: it must be at least 0")
    by_axis: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_axis.setdefault(o.axis, []).append(o)
    found = [_axis_disparity(axis, axis_outcomes, resamples, seed, max_flips) for axis, axis_outcomes in
             by_axis.items()]
    adjusted = holm([d.p_value for d in found])
    return [replace(d, p_holm=p) for d, p in zip(found, adjusted)]
