"""The study's figures (Atil et al., WOAH 2025) from `harness.agreement.model_harm_ranking`'s result:
per-model code shares, the percentage-rank histogram and the pairwise "less harmful" wins."""

from __future__ import annotations

from typing import Any

from harness import formatting as f
from harness.reporting import _html as h
from harness.reporting import _plots


def histogram_shares(ranking: dict[str, Any]) -> dict[str, list[float]]:
    """label -> [share at rank 1, 2, ..., k] over items where every output was harmful (missing = 0)."""
    hist = ranking.get("rank_histogram") or {}
    out: dict[str, list[float]] = {}
    for m in hist.get("models", []):
        shares = m.get("shares") or {}
        keys = sorted(shares, key=lambda k: int(k))
        out[str(m["label"])] = [float(shares[k]) if shares[k] is not None else 0.0 for k in keys]
    return out


def wins_matrix(ranking: dict[str, Any]) -> tuple[list[str], list[list[float | None]]]:
    """Labels and matrix[i][j] = share of shared items where label i was less harmful than label j."""
    labels = [str(m["label"]) for m in ranking.get("models", [])]
    index = {label: i for i, label in enumerate(labels)}
    matrix: list[list[float | None]] = [[None] * len(labels) for _ in labels]
    for p in ranking.get("pairwise", []):
        a, b = str(p["a"]), str(p["b"])
        if a in index and b in index:
            matrix[index[a]][index[b]] = p.get("a_win_rate")
            matrix[index[b]][index[a]] = p.get("b_win_rate")
    return labels, matrix


def study_parts(ranking: dict[str, Any]) -> list[Any]:
    rater = str(ranking.get("rater", "human"))
    parts: list[Any] = [h.tag("p", f"From {rater}'s rankings: {ranking.get('n_items', 0)} ranked blocks (one "
                                   f"annotator's ranking of one prompt's outputs), {ranking.get('n_ratings', 0)} "
                                   "ratings. Code 0 = not harmful (N/A), 1..k = least..most harmful within the prompt.",
                             "note")]
    codes = [str(c) for c in ranking.get("codes", [])]
    body = [[m.get("rank"), m.get("label"), m.get("n"), f.num(m.get("mean_code"), ".2f"), f.pct(m.get("share_harmful")),
             *[f.pct((m.get("code_shares") or {}).get(c)) for c in codes]] for m in ranking.get("models", [])]
    parts.append(h.table([h.Column("#"), h.Column("model", True), h.Column("ratings"), h.Column("mean code"),
                          h.Column("harmful"), *[h.Column("N/A" if c == "0" else f"code {c}") for c in codes]], body))
    shares = histogram_shares(ranking)
    n_hist = (ranking.get("rank_histogram") or {}).get("n_items", 0)
    if shares and n_hist:
        parts.append(h.img(_plots.data_uri(_plots.rank_histogram_svg(
            shares, f"percentage-rank histogram ({n_hist} items with every output harmful)")),
            "percentage-rank histogram"))
    else:
        parts.append(h.empty("No item had every output rated harmful: no percentage-rank histogram."))
    labels, matrix = wins_matrix(ranking)
    if len(labels) >= 2:
        parts.append(h.img(_plots.data_uri(_plots.pairwise_wins_svg(labels, matrix, "pairwise wins (less harmful)")),
                           "pairwise wins"))
        body = [[p["a"], p["b"], p["n"], p["a_less_harmful"], p["b_less_harmful"], p["ties"], f.pvalue(p.get("p_value")),
                 f.pvalue(p.get("p_holm"))] for p in ranking.get("pairwise", [])]
        parts.append(h.table([h.Column("A", True), h.Column("B", True), h.Column("shared items"),
                              h.Column("A less harmful"), h.Column("B less harmful"), h.Column("ties"),
                              h.Column("sign test p"), h.Column("Holm p")], body))
    test = ranking.get("test")
    if test:
        parts.append(h.tag("p", f"Friedman test over {test.get('n_items')} items where all {test.get('k_models')} "
                                f"models were ranked: statistic {f.num(test.get('statistic'), '.2f')}, "
                                f"p = {f.pvalue(test.get('p_value'))}.", "note"))
    return parts
