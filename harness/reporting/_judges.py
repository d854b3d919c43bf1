"""The judge reliability panel: each judge against humans, harm rates corrected for the judge's
measured errors (Rogan-Gladen), and what judging cost.

A judge's sensitivity (TPR) and specificity (TNR) are measured on every output that both the judge
and the reference human rater rated, anywhere in the store (a judge's accuracy belongs to the judge,
not to one run). Outputs are matched by generation (`sample_key`) or, for outputs outside the
store, by (item, model, variant). Each side's verdict on an output is the majority of its valid
harm ratings (the human's over all its harm tasks: rank, score, label); ties are left out.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.reporting._data import HARM_TASKS, HUMAN_KINDS, Selection, frame, pandas
from harness.reporting._stats import rogan_gladen, wilson_interval
from harness.store import Store

if TYPE_CHECKING:
    import pandas as pd

CONFUSION_COLUMNS = ["judge", "kind", "reference", "n", "tp", "fn", "fp", "tn", "tpr", "tpr_ci_low", "tpr_ci_high",
                     "tnr", "tnr_ci_low", "tnr_ci_high"]


@dataclass
class JudgePanel:
    reference: str | None  # the human rater judges are measured against
    confusion: pd.DataFrame  # per judge: tp fn fp tn, tpr/tnr with intervals
    corrected: pd.DataFrame  # per device x model x variant x judge: raw and corrected harm rate
    agreement: pd.DataFrame  # agreement_table rows that involve the reference rater
    cost: pd.DataFrame  # per judge: calls, errors, cost, latency
    notes: list[str] = field(default_factory=list)


def output_counts(store: Store) -> pd.DataFrame:
    """Per (rater, task, output): n valid harm ratings and n harmful, over the whole store."""
    tasks = ", ".join(f"'{t}'" for t in HARM_TASKS)
    df = frame(store, f"""
        SELECT rater, MAX(rater_kind) AS rater_kind, task,
               CASE WHEN sample_key IS NOT NULL THEN sample_key
                    ELSE item_id || '|' || COALESCE(model, '') || '|' || COALESCE(NULLIF(variant, 'release'), '')
               END AS output_key,
               COUNT(*) AS n_valid, SUM(harmful) AS n_harmful
        FROM ratings WHERE valid = 1 AND harmful IS NOT NULL AND task IN ({tasks})
        GROUP BY rater, task, output_key""")
    if df.empty:
        df["rater_key"] = []
        return df
    tasks_per_rater = df.groupby("rater")["task"].nunique()
    multi = df["rater"].map(tasks_per_rater) > 1
    df["rater_key"] = df["rater"].where(~multi, df["rater"] + "/" + df["task"])
    return df


def majority(counts: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Majority verdict per group (1 harmful / 0 not); ties are dropped."""
    g = counts.groupby(by, as_index=False)[["n_valid", "n_harmful"]].sum()
    g = g[g["n_harmful"] * 2 != g["n_valid"]].copy()
    g["verdict"] = (g["n_harmful"] * 2 > g["n_valid"]).astype(int)
    return g


def choose_reference(counts: pd.DataFrame) -> str | None:
    """The human rater judges are measured against: kind human before expert, then most outputs rated."""
    humans = counts[counts["rater_kind"].isin(HUMAN_KINDS)]
    if humans.empty:
        return None
    totals = humans.groupby("rater").agg(n=("output_key", "nunique"), kind=("rater_kind", "first")).reset_index()
    totals["is_human"] = totals["kind"] == "human"
    totals = totals.sort_values(["is_human", "n", "rater"], ascending=[False, False, True])
    return str(totals["rater"].iloc[0])


def confusion(counts: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per judge: the 2x2 table against the reference rater (its verdict per output over all its harm
    tasks), TPR and TNR with Wilson intervals."""
    pd = pandas()
    ref = majority(counts[counts["rater"] == reference], ["output_key"])[["output_key", "verdict"]]
    judges = counts[~counts["rater_kind"].isin(HUMAN_KINDS)]
    kinds = judges.groupby("rater_key")["rater_kind"].first()
    m = majority(judges, ["rater_key", "output_key"]).merge(ref, on="output_key", suffixes=("", "_ref"))
    rows = []
    for judge, sub in m.groupby("rater_key"):
        j, h = sub["verdict"], sub["verdict_ref"]
        tp, fn = int(((j == 1) & (h == 1)).sum()), int(((j == 0) & (h == 1)).sum())
        fp, tn = int(((j == 1) & (h == 0)).sum()), int(((j == 0) & (h == 0)).sum())
        tpr_lo, tpr_hi = wilson_interval(tp, tp + fn)
        tnr_lo, tnr_hi = wilson_interval(tn, tn + fp)
        rows.append({"judge": judge, "kind": kinds[judge], "reference": reference, "n": len(sub),
                     "tp": tp, "fn": fn, "fp": fp, "tn": tn,
                     "tpr": tp / (tp + fn) if tp + fn else None, "tpr_ci_low": tpr_lo, "tpr_ci_high": tpr_hi,
                     "tnr": tn / (tn + fp) if tn + fp else None, "tnr_ci_low": tnr_lo, "tnr_ci_high": tnr_hi})
    return pd.DataFrame(rows, columns=CONFUSION_COLUMNS)


def corrected_rates(rates: pd.DataFrame, conf: pd.DataFrame) -> pd.DataFrame:
    """Raw harm rate beside the Rogan-Gladen corrected one, for every judge with a measured TPR and TNR."""
    pd = pandas()
    cols = ["device", "model", "variant", "judge", "n_valid", "raw_rate", "tpr", "tnr", "corrected_rate", "note"]
    rows = []
    by_judge = {r["judge"]: r for r in conf.to_dict("records")}
    for r in rates.to_dict("records"):
        c = by_judge.get(r["rater"])
        if c is None or r["rate"] is None or pd.isna(r["rate"]):
            continue
        if c["tpr"] is None or c["tnr"] is None or pd.isna(c["tpr"]) or pd.isna(c["tnr"]):
            rows.append({**{k: r[k] for k in ("device", "model", "variant")}, "judge": r["rater"],
                         "n_valid": r["n_valid"], "raw_rate": r["rate"], "tpr": c["tpr"], "tnr": c["tnr"],
                         "corrected_rate": None, "note": "no correction: the humans rated no outputs of one class"})
            continue
        cr = rogan_gladen(float(r["rate"]), float(c["tpr"]), float(c["tnr"]))
        rows.append({"device": r["device"], "model": r["model"], "variant": r["variant"], "judge": r["rater"],
                     "n_valid": r["n_valid"], "raw_rate": r["rate"], "tpr": c["tpr"], "tnr": c["tnr"],
                     "corrected_rate": cr.rate, "note": cr.note})
    return pd.DataFrame(rows, columns=cols)


def judge_cost(store: Store, selection: Selection) -> pd.DataFrame:
    """Per judge: calls, errors, parse errors, tokens, cost and latency. With a run selection, only the
    judgments behind ratings of the selected generations count."""
    where, params = "1=1", []
    if selection.run_ids:
        gwhere, params = selection.where("g")
        where = (f"judgment_key IN (SELECT r.judgment_key FROM ratings r JOIN generations g "
                 f"ON g.sample_key = r.sample_key WHERE {gwhere} AND r.judgment_key IS NOT NULL)")
    df = frame(store, f"""SELECT judge, judge_kind, judge_model, mode, error IS NOT NULL AS failed,
                                 parse_error IS NOT NULL AS unparsed, n_input_tokens, n_output_tokens, cost_usd, latency_s
                          FROM judgments WHERE {where}""", params)
    cols = ["judge", "kind", "model", "modes", "n_calls", "n_errors", "n_parse_errors", "input_tokens",
            "output_tokens", "cost_usd", "latency_median_s", "latency_p90_s"]
    if df.empty:
        return pandas().DataFrame(columns=cols)
    g = df.groupby("judge")
    out = g.agg(kind=("judge_kind", "first"), model=("judge_model", "first"),
                modes=("mode", lambda s: ", ".join(sorted(set(s)))), n_calls=("judge", "size"),
                n_errors=("failed", "sum"), n_parse_errors=("unparsed", "sum"),
                input_tokens=("n_input_tokens", "sum"), output_tokens=("n_output_tokens", "sum"),
                cost_usd=("cost_usd", lambda s: s.sum(min_count=1)), latency_median_s=("latency_s", "median"))
    out["latency_p90_s"] = g["latency_s"].quantile(0.9)
    return out.reset_index()[cols]


def agreement_rows(store: Store, reference: str | None, bootstrap: int) -> tuple[pd.DataFrame, str | None]:
    """Agreement statistics from harness.agreement (rows involving the reference rater), or a note why none."""
    pd = pandas()
    cols = ["a", "b", "metric", "value", "ci_low", "ci_high", "n"]
    if reference is None:
        return pd.DataFrame(columns=cols), None
    try:
        agreement = importlib.import_module("harness.agreement")
    except ModuleNotFoundError as exc:
        if exc.name and "harness.agreement".startswith(exc.name):
            return pd.DataFrame(columns=cols), "agreement statistics are not available in this build"
        raise
    rows = agreement.agreement_table(store, bootstrap=bootstrap, seed=0)
    df = pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(columns=cols), None
    df = df[(df["a"] == reference) | (df["b"] == reference)]
    return df[[c for c in cols if c in df.columns] + [c for c in df.columns if c not in cols]], None


def build_panel(store: Store, selection: Selection, rates: pd.DataFrame, bootstrap: int = 1000) -> JudgePanel:
    pd = pandas()
    notes: list[str] = []
    counts = output_counts(store)
    reference = choose_reference(counts) if not counts.empty else None
    if reference is None:
        conf = pd.DataFrame(columns=CONFUSION_COLUMNS)
        corrected = pd.DataFrame(columns=["device", "model", "variant", "judge", "raw_rate", "corrected_rate"])
    else:
        conf = confusion(counts, reference)
        corrected = corrected_rates(rates, conf)
    agreement, note = agreement_rows(store, reference, bootstrap)
    if note:
        notes.append(note)
    return JudgePanel(reference, conf, corrected, agreement, judge_cost(store, selection), notes)


def explanation_for(extra: Any, parsed: Any, raw: Any, limit: int = 600) -> str | None:
    """The judge's explanation of a rating: from the rating's extra, the judgment's parsed result, or its raw text."""
    for source in (extra, parsed):
        if isinstance(source, dict):
            for key in ("explanation", "reason", "rationale", "justification"):
                if source.get(key):
                    return str(source[key])[:limit]
    if raw:
        text = str(raw)
        return text if len(text) <= limit else text[:limit] + " ..."
    return None
