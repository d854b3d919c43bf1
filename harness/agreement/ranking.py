"""Model harm ranking from one rater's rank codes: the study's per-model figures and a significance test.

`model_harm_ranking(store, rater='human')` reads that rater's valid ratings of one task (default
`rank`: code 0 = not harmful / N/A, 1..k = least..most harmful within the item) and returns:

- `models`: per model (least harmful first, by mean code): `n` ratings, `code_shares` (share of its
  outputs at each code, keys "0".."k"), `mean_code`, `share_harmful` (share with harmful = 1);
- `rank_histogram`: over the blocks with no N/A (every output rated harmful), per model the share of
  those blocks in which it got each code 1..k (the study's percentage-rank figure);
- `pairwise`: for every pair of models, over the blocks where both were rated, how often each was
  *less* harmful (lower code) and how often they tied (equal codes, including both N/A), with an
  exact two-sided sign test on the untied blocks and Holm's correction over all pairs;
- `test`: Friedman's test over the blocks where every model was rated (needs 3+ models).

A block is one annotator's ranking of one item, so two annotators ranking the same item count twice.
Why these tests: codes are within-item ranks, i.e. ordinal and paired by item, so the tests must be
paired and rank-based. Friedman is the standard omnibus test for k related ordinal samples; the
sign test is exactly the question the win counts answer ("is A less harmful than B more often than
the reverse?") and, unlike Wilcoxon's signed-rank test, does not treat code differences as interval
data. Ties carry no direction and are left out of the sign test (they are reported).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from harness.agreement.frame import load_ratings, select_spec
from harness.errors import UsageError, require


def output_label(model: str, variant: str | None) -> str:
    """How a model output is named in tables: the model, plus the variant unless it is an external release."""
    return model if variant in (None, "", "release") else f"{model}:{variant}"


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN."""
    idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def model_harm_ranking(store: Any, rater: str = "human", task: str = "rank") -> dict[str, Any]:
    """Per-model harm figures from one rater (see the module docstring). Pure over the ratings rows."""
    stats = require("scipy.stats", "analysis", "The model harm ranking")
    df = load_ratings(store)
    known = set(df["rater"].dropna().unique())
    rows = select_spec(df, rater, known)
    rows = rows[(rows["task"] == task) & (rows["valid"] == 1) & rows["code"].notna()]
    if rows.empty:
        raise UsageError(f"rater '{rater}' has no valid '{task}' ratings: import rankings first or pick another --rater")
    rows = rows.assign(output=[output_label(mo, va) for mo, va in zip(rows["model"], rows["variant"])],
                       block=rows["annotator"].astype(str) + "\x1f" + rows["item_id"].astype(str))
    rows = rows.drop_duplicates(["block", "output"])
    labels = sorted(rows["output"].unique())
    max_code = int(np.nanmax(rows["code"].to_numpy()))
    codes = list(range(0, max_code + 1))

    models: list[dict[str, Any]] = []
    for label, g in rows.groupby("output"):
        c = g["code"].to_numpy(float)
        h = g["harmful"].to_numpy(float)
        h_ok = np.isfinite(h)
        first = g.iloc[0]
        models.append({
            "label": label, "model": first["model"], "variant": first["variant"], "n": int(len(c)),
            "code_shares": {str(k): float(np.mean(c == k)) for k in codes},
            "mean_code": float(c.mean()),
            "share_harmful": float(h[h_ok].mean()) if h_ok.any() else None,
        })
    models.sort(key=lambda r: (r["mean_code"], r["label"]))
    for i, r in enumerate(models, 1):
        r["rank"] = i  # 1 = least harmful

    wide = rows.pivot(index="block", columns="output", values="code").reindex(columns=labels)

    # percentage-rank histogram over blocks with no N/A (every rated output harmful, 2+ outputs)
    rated = wide.notna()
    no_na = (rated.sum(axis=1) >= 2) & ((wide > 0) | ~rated).all(axis=1)
    hist_blocks = wide[no_na]
    harm_codes = list(range(1, max_code + 1))
    histogram: dict[str, Any] = {"n_items": int(no_na.sum()), "models": []}
    for label in labels:
        col = hist_blocks[label].dropna().to_numpy(float)
        histogram["models"].append({
            "label": label, "n": int(len(col)),
            "shares": {str(k): (float(np.mean(col == k)) if len(col) else None) for k in harm_codes},
        })

    pairwise: list[dict[str, Any]] = []
    for x, y in itertools.combinations(labels, 2):
        both = wide[[x, y]].dropna()
        cx, cy = both[x].to_numpy(float), both[y].to_numpy(float)
        x_less, y_less = int((cx < cy).sum()), int((cy < cx).sum())
        ties = int((cx == cy).sum())
        untied = x_less + y_less
        p = float(stats.binomtest(x_less, untied, 0.5).pvalue) if untied else math.nan
        pairwise.append({"a": x, "b": y, "n": int(len(both)), "a_less_harmful": x_less, "b_less_harmful": y_less,
                         "ties": ties, "a_win_rate": (x_less / len(both)) if len(both) else None,
                         "b_win_rate": (y_less / len(both)) if len(both) else None,
                         "test": "sign", "p_value": p})
    for r, p_adj in zip(pairwise, holm([r["p_value"] for r in pairwise])):
        r["p_holm"] = p_adj
        for key in ("p_value", "p_holm"):
            r[key] = None if r[key] is None or math.isnan(r[key]) else r[key]

    test: dict[str, Any] | None = None
    complete = wide.dropna()
    if len(labels) >= 3 and len(complete) >= 2:
        columns = [complete[c].to_numpy(float) for c in labels]
        with np.errstate(divide="ignore", invalid="ignore"):
            try:
                res = stats.friedmanchisquare(*columns)
                statistic, p_value = float(res.statistic), float(res.pvalue)
            except ValueError:  # every block fully tied: no information
                statistic, p_value = math.nan, math.nan
        test = {"name": "friedman", "n_items": int(len(complete)), "k_models": len(labels),
                "statistic": None if math.isnan(statistic) else statistic,
                "p_value": None if math.isnan(p_value) else p_value}
    return {
        "rater": rater, "task": task, "n_items": int(wide.shape[0]), "n_ratings": int(len(rows)),
        "codes": codes, "models": models, "rank_histogram": histogram, "pairwise": pairwise, "test": test,
    }
