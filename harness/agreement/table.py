"""The agreement table: every pair of raters, over the items both rated, with bootstrap intervals.

`agreement_table(store, ...)` loads the ratings and calls `agreement_rows(frame, ...)`, which is pure.
For each pair of raters and each task both rated (rank, score, label, refusal, pairwise):

- rank:  rbo, alpha_nominal / alpha_ordinal / alpha_interval (codes 0..k), kendall_tau_b, spearman,
         exact_match (whole item ranking identical), cohen_kappa (harmful yes/no per output);
- score: the same without rbo, exact_match per output;
- label, refusal: exact_match per output, cohen_kappa and alpha_nominal on the label;
- pairwise: exact_match per item (same output preferred), cohen_kappa and alpha_nominal on the code.

Units are outputs, keyed by (item_id, model, variant); only valid ratings count (an invalid rating is
never read as "not harmful"). When one rater has several annotators on the same output, its value is
their mean code, majority harmful flag (a tie is dropped) and most frequent label (a tie is dropped).
Raters with several annotators also get inter-annotator rows: every pair of annotators
(`rater:annotator`) and, with a == b == rater, alpha and Fleiss' kappa over all of them.

Confidence intervals: 95% percentile bootstrap resampling items (prompts), `bootstrap` resamples,
seeded by `seed` and the pair's names. `n` is the number of items the value is computed over.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.agreement import metrics as m
from harness.agreement.bootstrap import percentile_interval, resampled_sums, seed_for
from harness.agreement.frame import load_ratings, select_spec

RANK_LIKE = {"rank", "score"}
ITEM_LEVEL_EXACT = {"rank", "pairwise"}
KIND_ORDER = {"human": 0, "expert": 1, "external-judge": 2, "judge": 3}
MAX_ANNOTATOR_PAIRS = 45  # at most 10 annotators of one rater are compared pairwise


@dataclass
class RboOptions:
    """RBO settings: persistence p and the conventions for empty lists (None drops the item)."""

    p: float = 0.9
    both_empty: float | None = 1.0
    one_empty: float | None = 0.0


@dataclass
class _Metric:
    name: str
    stats: np.ndarray  # items x d
    value_of: Callable[[np.ndarray], Any]  # summed stats (d or B x d) -> value(s)
    n: int
    point: float | None = None  # when the point value comes from a reference package
    mean: bool = False  # a mean over items: stats are (value, defined) and n counts defined items
    extra: dict[str, Any] = field(default_factory=dict)


def _mean_metric(name: str, values: np.ndarray) -> _Metric:
    defined = np.isfinite(values)
    stats = np.column_stack([np.where(defined, values, 0.0), defined.astype(float)])
    return _Metric(name, stats, _ratio, int(defined.sum()), mean=True)


def _ratio(s: np.ndarray) -> Any:
    s = np.asarray(s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if s.ndim == 1:
            return float(s[0] / s[1]) if s[1] > 0 else math.nan
        return np.where(s[:, 1] > 0, s[:, 0] / s[:, 1], np.nan)


def _per_item_matrix(item_idx: np.ndarray, a_idx: np.ndarray, b_idx: np.ndarray, n_items: int, size: int,
                     symmetric: bool) -> np.ndarray:
    """items x size^2 counts of (a, b) value pairs; symmetric adds (b, a) too (a coincidence matrix)."""
    flat = item_idx * size * size + a_idx * size + b_idx
    counts = np.bincount(flat, minlength=n_items * size * size).astype(float)
    if symmetric:
        flat_t = item_idx * size * size + b_idx * size + a_idx
        counts += np.bincount(flat_t, minlength=n_items * size * size)
    return counts.reshape(n_items, size * size)


def _alpha_metric(level: str, stats: np.ndarray, values: np.ndarray, reliability: np.ndarray | None) -> _Metric:
    v = len(values)

    def value_of(s: np.ndarray) -> Any:
        s = np.asarray(s, dtype=float)
        return m.alpha_from_coincidences(s.reshape(*s.shape[:-1], v, v), level, values)

    point = None
    if reliability is not None and reliability.shape[1] > 0:
        point = m.krippendorff_alpha(reliability, level)
    return _Metric(f"alpha_{level}", stats, value_of, int((stats.sum(axis=1) > 0).sum()), point)


def _kappa_metric(name: str, stats: np.ndarray, size: int) -> _Metric:
    def value_of(s: np.ndarray) -> Any:
        s = np.asarray(s, dtype=float)
        return m.cohen_kappa_from_confusion(s.reshape(*s.shape[:-1], size, size))

    return _Metric(name, stats, value_of, int((stats.sum(axis=1) > 0).sum()))


# -- per-rater units ------------------------------------------------------------------------------
def _units(rows: Any, label_task: bool) -> Any:
    """One row per output (item_id, model, variant) with code, harmful and label, annotators merged."""
    keys = ["item_id", "model", "variant"]
    rows = rows[rows["valid"] == 1]
    if label_task:
        lab = rows["label"].where(rows["label"].notna(), rows["code"].map(lambda c: None if c != c else f"{c:g}"))
        rows = rows.assign(label=lab)
    if not rows.duplicated(keys).any():
        return rows[keys + ["code", "harmful", "label"]]
    grouped = rows.groupby(keys, sort=False)
    out = grouped.agg(code=("code", "mean"), harmful=("harmful", "mean")).reset_index()
    out["harmful"] = np.where(out["harmful"] > 0.5, 1.0, np.where(out["harmful"] < 0.5, 0.0, np.nan))

    def mode(s: Any) -> Any:
        counts = s.dropna().value_counts()
        if counts.empty or (len(counts) > 1 and counts.iloc[0] == counts.iloc[1]):
            return None
        return counts.index[0]

    labels = grouped["label"].agg(mode).reset_index(drop=True) if label_task else None
    out["label"] = labels.values if labels is not None else None
    return out


# -- one pair -------------------------------------------------------------------------------------
def _pair_metrics(ua: Any, ub: Any, task: str, rbo: RboOptions) -> tuple[list[_Metric], np.ndarray]:
    """Metrics of two raters' units on one task; also returns the item_id of each stats row."""
    keys = ["item_id", "model", "variant"]
    merged = ua.merge(ub, on=keys, suffixes=("_a", "_b")).sort_values(keys, kind="stable")
    label_task = task not in RANK_LIKE
    if label_task:
        merged = merged[merged["label_a"].notna() & merged["label_b"].notna()]
    else:
        merged = merged[merged["code_a"].notna() & merged["code_b"].notna()]
    if merged.empty:
        return [], np.array([], dtype=object)
    item_ids, item_idx = np.unique(merged["item_id"].to_numpy(dtype=str), return_inverse=True)
    n_items = len(item_ids)
    col = merged.groupby("item_id", sort=False).cumcount().to_numpy()
    k = int(col.max()) + 1
    out: list[_Metric] = []

    if not label_task:
        xa = np.full((n_items, k), np.nan)
        xb = np.full((n_items, k), np.nan)
        ca = merged["code_a"].to_numpy(float)
        cb = merged["code_b"].to_numpy(float)
        xa[item_idx, col] = ca
        xb[item_idx, col] = cb
        if task == "rank":
            pos_a, pos_b = m.harmful_positions(xa), m.harmful_positions(xb)
            out.append(_mean_metric("rbo", m.rbo_ext_rows(pos_a, pos_b, rbo.p, rbo.both_empty, rbo.one_empty)))
        values = np.unique(np.concatenate([ca, cb]))
        va, vb = np.searchsorted(values, ca), np.searchsorted(values, cb)
        coinc = _per_item_matrix(item_idx, va, vb, n_items, len(values), symmetric=True)
        reliability = np.vstack([ca, cb])
        for level in ("nominal", "ordinal", "interval"):
            out.append(_alpha_metric(level, coinc, values, reliability))
        out.append(_mean_metric("kendall_tau_b", m.kendall_tau_b_rows(xa, xb)))
        out.append(_mean_metric("spearman", m.spearman_rows(xa, xb)))
        equal = (ca == cb).astype(float)
        out.append(_exact_metric(task, equal, item_idx, n_items))
        ha = merged["harmful_a"].to_numpy(float)
        hb = merged["harmful_b"].to_numpy(float)
        ok = np.isfinite(ha) & np.isfinite(hb)
        conf = _per_item_matrix(item_idx[ok], ha[ok].astype(int), hb[ok].astype(int), n_items, 2, symmetric=False)
        out.append(_kappa_metric("cohen_kappa", conf, 2))
    else:
        la = merged["label_a"].astype(str).to_numpy()
        lb = merged["label_b"].astype(str).to_numpy()
        labels = np.unique(np.concatenate([la, lb]))
        ia, ib = np.searchsorted(labels, la), np.searchsorted(labels, lb)
        out.append(_exact_metric(task, (la == lb).astype(float), item_idx, n_items))
        conf = _per_item_matrix(item_idx, ia, ib, n_items, len(labels), symmetric=False)
        out.append(_kappa_metric("cohen_kappa", conf, len(labels)))
        coinc = _per_item_matrix(item_idx, ia, ib, n_items, len(labels), symmetric=True)
        out.append(_alpha_metric("nominal", coinc, np.arange(len(labels), dtype=float),
                                 np.vstack([ia, ib]).astype(float)))
    return out, item_ids


def _exact_metric(task: str, equal: np.ndarray, item_idx: np.ndarray, n_items: int) -> _Metric:
    units = np.bincount(item_idx, minlength=n_items).astype(float)
    agree = np.bincount(item_idx, weights=equal, minlength=n_items)
    if task in ITEM_LEVEL_EXACT:
        return _mean_metric("exact_match", (agree == units).astype(float))
    return _Metric("exact_match", np.column_stack([agree, units]), _ratio, n_items)


# -- several annotators of one rater -------------------------------------------------------------
def _multi_annotator_metrics(rows: Any, task: str) -> tuple[list[_Metric], np.ndarray]:
    """Alpha and Fleiss' kappa among the annotators of one rater, over outputs two or more of them rated."""
    rows = rows[rows["valid"] == 1]
    label_task = task not in RANK_LIKE
    keys = ["item_id", "model", "variant"]
    if label_task:
        lab = rows["label"].where(rows["label"].notna(), rows["code"].map(lambda c: None if c != c else f"{c:g}"))
        rows = rows.assign(value=lab).dropna(subset=["value"])
    else:
        rows = rows.assign(value=rows["code"]).dropna(subset=["value"])
    rows = rows.drop_duplicates(keys + ["annotator"])
    per_unit = rows.groupby(keys)["annotator"].transform("size")
    rows = rows[per_unit >= 2]
    if rows.empty:
        return [], np.array([], dtype=object)
    unit_idx = rows.groupby(keys, sort=True).ngroup().to_numpy()
    n_units = int(unit_idx.max()) + 1
    unit_item = np.empty(n_units, dtype=object)
    unit_item[unit_idx] = rows["item_id"].to_numpy(dtype=str)
    item_ids, item_of_unit = np.unique(unit_item.astype(str), return_inverse=True)
    n_items = len(item_ids)
    annotators, ann_idx = np.unique(rows["annotator"].astype(str).to_numpy(), return_inverse=True)

    if label_task:
        values_raw = rows["value"].astype(str).to_numpy()
        domain, v_idx = np.unique(values_raw, return_inverse=True)
        values = np.arange(len(domain), dtype=float)
    else:
        codes = rows["value"].to_numpy(float)
        values, v_idx = np.unique(codes, return_inverse=True)
    v = len(values)
    counts = np.zeros((n_units, v))
    np.add.at(counts, (unit_idx, v_idx), 1.0)
    coinc_units = m.coincidences(counts).reshape(n_units, v * v)
    coinc = np.zeros((n_items, v * v))
    np.add.at(coinc, item_of_unit, coinc_units)
    reliability = np.full((len(annotators), n_units), np.nan)
    reliability[ann_idx, unit_idx] = values[v_idx]
    out: list[_Metric] = []
    levels = ("nominal",) if label_task else ("nominal", "ordinal", "interval")
    for level in levels:
        out.append(_alpha_metric(level, coinc, values, reliability))

    # Fleiss' kappa: outputs rated by the most common number (>= 2) of annotators.
    if label_task:
        cat_counts = counts
    else:
        harmful = rows["harmful"].to_numpy(float)
        ok = np.isfinite(harmful)
        cat_counts = np.zeros((n_units, 2))
        np.add.at(cat_counts, (unit_idx[ok], harmful[ok].astype(int)), 1.0)
    m_u = cat_counts.sum(axis=1)
    if (m_u >= 2).any():
        common = np.bincount(m_u[m_u >= 2].astype(int)).argmax()
        keep = m_u == common
        unit_stats = m.fleiss_unit_stats(cat_counts[keep])
        stats = np.zeros((n_items, unit_stats.shape[1]))
        np.add.at(stats, item_of_unit[keep], unit_stats)
        out.append(_Metric("fleiss_kappa", stats, m.fleiss_from_stats, int((stats[:, 1] > 0).sum()),
                           extra={"annotators_per_output": int(common)}))
    return out, item_ids


# -- assembling rows ------------------------------------------------------------------------------
def _rows_for(metrics_: list[_Metric], item_ids: np.ndarray, a: str, b: str, task: str, bootstrap: int,
              seed: int, categories: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Table rows for one comparison: all items, then (when categories is given) each category."""
    if not metrics_:
        return []
    subsets: list[tuple[Any, np.ndarray | None]] = [(None, None)]
    if categories is not None:
        cats = np.array([categories.get(i) for i in item_ids], dtype=object)
        for cat in sorted({c for c in cats if c is not None}, key=str):
            subsets.append((cat, cats == cat))
    rows: list[dict[str, Any]] = []
    for category, mask in subsets:
        # Metrics that share a statistics block (the three alpha levels) are resampled once.
        blocks: dict[int, np.ndarray] = {}
        for mt in metrics_:
            if id(mt.stats) not in blocks:
                blocks[id(mt.stats)] = mt.stats if mask is None else mt.stats[mask]
        offsets: dict[int, int] = {}
        start = 0
        for key, block in blocks.items():
            offsets[key] = start
            start += block.shape[1]
        sums = None
        n_rows = next(iter(blocks.values())).shape[0]
        if bootstrap > 0 and n_rows > 0:
            rng = seed_for(seed, a, b, task, category)
            sums = resampled_sums(np.hstack(list(blocks.values())), bootstrap, rng)
        for mt in metrics_:
            s = blocks[id(mt.stats)]
            start, w = offsets[id(mt.stats)], s.shape[1]
            # The reference package gives the point value over all items; subsets use the same formula.
            value = mt.point if mask is None and mt.point is not None else mt.value_of(s.sum(axis=0))
            low = high = None
            if sums is not None:
                low, high = percentile_interval(np.asarray(mt.value_of(sums[:, start:start + w]), dtype=float))
            n = int(s[:, 1].sum()) if mt.mean else int((s.sum(axis=1) > 0).sum())
            if n == 0:
                continue
            value = None if value is None or not math.isfinite(value) else float(value)
            row = {"a": a, "b": b, "task": task, "category": category, "metric": mt.name, "value": value,
                   "ci_low": low, "ci_high": high, "n": n}
            row.update(mt.extra)
            rows.append(row)
    return rows


def _rater_order(df: Any) -> list[str]:
    kinds = df.groupby("rater")["rater_kind"].first().to_dict()
    return sorted(kinds, key=lambda r: (KIND_ORDER.get(kinds[r], 9), r))


def agreement_rows(ratings: Any, raters: list[str] | None = None, bootstrap: int = 1000, seed: int = 0,
                   task: str | None = None, by_category: bool = False, rbo: RboOptions | None = None,
                   inter_annotator: bool = True) -> list[dict[str, Any]]:
    """The agreement table over ratings rows (a DataFrame or dicts); see the module docstring."""
    rbo = rbo or RboOptions()
    df = load_ratings(ratings)
    if task is not None:
        df = df[df["task"] == task]
    known = set(df["rater"].dropna().unique())
    specs = list(raters) if raters else _rater_order(df)
    frames = {spec: select_spec(df, spec, known) for spec in specs}
    categories: dict[str, Any] | None = None
    if by_category:
        cats = df.dropna(subset=["category"]).groupby("item_id")["category"].first()
        categories = cats.to_dict()
    rows: list[dict[str, Any]] = []
    units_cache: dict[tuple[str, str], Any] = {}

    def units_of(spec: str, t: str) -> Any:
        if (spec, t) not in units_cache:
            f = frames[spec]
            units_cache[(spec, t)] = _units(f[f["task"] == t], t not in RANK_LIKE)
        return units_cache[(spec, t)]

    for a, b in itertools.combinations(specs, 2):
        for t in sorted(set(frames[a]["task"].unique()) & set(frames[b]["task"].unique())):
            mets, item_ids = _pair_metrics(units_of(a, t), units_of(b, t), t, rbo)
            rows.extend(_rows_for(mets, item_ids, a, b, t, bootstrap, seed, categories))

    if inter_annotator:
        for spec in specs:
            f = frames[spec]
            if f["annotator"].nunique() < 2:
                continue
            for t in sorted(f["task"].unique()):
                ft = f[f["task"] == t]
                mets, item_ids = _multi_annotator_metrics(ft, t)
                if not mets:
                    continue  # no output was rated by two of its annotators
                rows.extend(_rows_for(mets, item_ids, spec, spec, t, bootstrap, seed, categories))
                annotators = sorted(a for a in ft["annotator"].unique() if a)
                pairs = list(itertools.combinations(annotators, 2))
                if len(pairs) > MAX_ANNOTATOR_PAIRS:
                    continue
                for x, y in pairs:
                    fx, fy = ft[ft["annotator"] == x], ft[ft["annotator"] == y]
                    ux, uy = _units(fx, t not in RANK_LIKE), _units(fy, t not in RANK_LIKE)
                    mets2, ids2 = _pair_metrics(ux, uy, t, rbo)
                    rows.extend(_rows_for(mets2, ids2, f"{spec}:{x}", f"{spec}:{y}", t, bootstrap, seed,
                                          categories))
    if not by_category:
        for r in rows:
            r.pop("category", None)
    return rows


def agreement_table(store: Any, raters: list[str] | None = None, bootstrap: int = 1000, seed: int = 0,
                    task: str | None = None, by_category: bool = False, rbo: RboOptions | None = None
                    ) -> list[dict[str, Any]]:
    """Agreement rows for every pair of raters in a store (or a store path, or ratings rows).

    Keys: a, b, metric, value, ci_low, ci_high, n, task, and category (None = all items) when
    by_category is set. Metric names: see harness.agreement.METRICS.
    """
    return agreement_rows(load_ratings(store), raters=raters, bootstrap=bootstrap, seed=seed, task=task,
                          by_category=by_category, rbo=rbo)
