"""The judge reliability panel: each judge against humans, harm rates corrected for the judge's
measured errors (Rogan-Gladen), and what judging cost.

A judge's sensitivity (TPR) and specificity (TNR) are measured on every output that both the judge
and the reference human rater rated, anywhere in the store (a judge's accuracy belongs to the judge,
not to one run). Outputs are matched by generation (`sample_key`) or, for outputs outside the
store, by (item, model, variant). Each side's verdict on an output is the majority of its valid
harm ratings (the human's over all its harm tasks: rank, score, label); ties are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.intervals import CAN_CORRECT, card_verdict
from harness.rates.harm import HarmRate
from harness.records import HARM_TASKS, HUMAN_KINDS
from harness.reporting._data import Selection, pandas
from harness.stats import majority, median, quantile, rogan_gladen, wilson_interval
from harness.store import Store

if TYPE_CHECKING:
    import pandas as pd

CONFUSION_COLUMNS = ["judge", "kind", "reference", "n", "tp", "fn", "fp", "tn", "tpr", "tpr_ci_low", "tpr_ci_high",
                     "tnr", "tnr_ci_low", "tnr_ci_high"]
CORRECTED_COLUMNS = ["device", "model", "variant", "judge", "n_valid", "raw_rate", "tpr", "tnr", "corrected_rate",
                     "note"]
COST_COLUMNS = ["judge", "kind", "model", "modes", "n_calls", "n_errors", "n_parse_errors", "input_tokens",
                "output_tokens", "cost_usd", "latency_median_s", "latency_p90_s"]


@dataclass
class JudgePanel:
    reference: str | None  # the human rater judges are measured against
    confusion: pd.DataFrame  # per judge: tp fn fp tn, tpr/tnr with intervals
    corrected: pd.DataFrame  # per device x model x variant x judge: raw and corrected harm rate
    agreement: pd.DataFrame  # agreement_table rows that involve the reference rater
    cost: pd.DataFrame  # per judge: calls, errors, cost, latency
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutputCount:
    rater: str
    rater_kind: str
    task: str
    output_key: str
    n_valid: int
    n_harmful: int
    rater_key: str


def output_counts(store: Store) -> list[OutputCount]:
    """Per (rater, task, output): valid harm verdicts and harmful ones, over the whole store."""
    rows = store.output_verdict_counts(HARM_TASKS)
    tasks: dict[str, set[str]] = {}
    for rater, _, task, *_ in rows:
        tasks.setdefault(rater, set()).add(task)
    return [OutputCount(r, k, t, o, n, h, f"{r}/{t}" if len(tasks[r]) > 1 else r) for r, k, t, o, n, h in rows]


def verdicts(counts: list[OutputCount], by_key: bool) -> dict[tuple[str, str], int]:
    """(rater or rater key, output) -> majority verdict over the rater's harm verdicts of it (ties dropped)."""
    acc: dict[tuple[str, str], list[int]] = {}
    for c in counts:
        a = acc.setdefault((c.rater_key if by_key else c.rater, c.output_key), [0, 0])
        a[0] += c.n_harmful
        a[1] += c.n_valid
    out = {}
    for k, (h, n) in acc.items():
        v = majority(h, n)
        if v is not None:
            out[k] = v
    return out


def choose_reference(counts: list[OutputCount]) -> str | None:
    """The human rater judges are measured against: kind human before expert, then most outputs rated."""
    outputs: dict[str, set[str]] = {}
    kinds: dict[str, str] = {}
    for c in counts:
        if c.rater_kind in HUMAN_KINDS:
            outputs.setdefault(c.rater, set()).add(c.output_key)
            kinds.setdefault(c.rater, c.rater_kind)
    if not outputs:
        return None
    return min(outputs, key=lambda r: (kinds[r] != "human", -len(outputs[r]), r))


def confusion(counts: list[OutputCount], reference: str) -> pd.DataFrame:
    """Per judge: the 2x2 table against the reference rater (its verdict per output over all its harm tasks),
    TPR and TNR with Wilson intervals."""
    ref = {o: v for (r, o), v in verdicts([c for c in counts if c.rater == reference], by_key=False).items()}
    judges = [c for c in counts if c.rater_kind not in HUMAN_KINDS]
    kinds = {c.rater_key: c.rater_kind for c in judges}
    cells: dict[str, list[int]] = {}
    for (judge, output), v in verdicts(judges, by_key=True).items():
        h = ref.get(output)
        if h is None:
            continue
        t = cells.setdefault(judge, [0, 0, 0, 0])  # tp fn fp tn
        t[(0 if v else 1) if h else (2 if v else 3)] += 1
    rows = []
    for judge in sorted(cells):
        tp, fn, fp, tn = cells[judge]
        tpr_lo, tpr_hi = wilson_interval(tp, tp + fn)
        tnr_lo, tnr_hi = wilson_interval(tn, tn + fp)
        rows.append({"judge": judge, "kind": kinds[judge], "reference": reference, "n": tp + fn + fp + tn,
                     "tp": tp, "fn": fn, "fp": fp, "tn": tn,
                     "tpr": tp / (tp + fn) if tp + fn else None, "tpr_ci_low": tpr_lo, "tpr_ci_high": tpr_hi,
                     "tnr": tn / (tn + fp) if tn + fp else None, "tnr_ci_low": tnr_lo, "tnr_ci_high": tnr_hi})
    return pandas().DataFrame(rows, columns=CONFUSION_COLUMNS)


def corrected_rates(harm: list[HarmRate], conf: pd.DataFrame) -> pd.DataFrame:
    """Raw harm rate beside the Rogan-Gladen corrected one, for every judge with a measured TPR and TNR."""
    rows = []
    by_judge = {r["judge"]: r for r in conf.to_dict("records")}
    for r in harm:
        c = by_judge.get(r.rater)
        if c is None or r.rate is None:
            continue
        base = {"device": r.device, "model": r.model, "variant": r.variant, "judge": r.rater, "n_valid": r.n_valid,
                "raw_rate": r.rate, "tpr": c["tpr"], "tnr": c["tnr"]}
        if c["tpr"] is None or c["tnr"] is None:
            rows.append({**base, "corrected_rate": None, "note": "no correction: the humans rated no outputs of one "
                                                                 "class"})
            continue
        verdict = card_verdict(int(c["tp"]), int(c["fn"]), int(c["fp"]), int(c["tn"]))
        if verdict != CAN_CORRECT:  # the same rule as the leaderboard's: J's interval must exclude 0
            rows.append({**base, "corrected_rate": None, "note": f"no correction: {verdict} (n={c['n']})"})
            continue
        cr = rogan_gladen(float(r.rate), float(c["tpr"]), float(c["tnr"]))
        rows.append({**base, "corrected_rate": cr.rate, "note": cr.note})
    return pandas().DataFrame(rows, columns=CORRECTED_COLUMNS)


def judge_cost(store: Store, selection: Selection) -> pd.DataFrame:
    """Per judge: calls, errors, parse errors, tokens, cost and latency. With a run selection, only the
    judgments behind ratings of the selected generations count."""
    by_judge: dict[str, list[Any]] = {}
    for row in store.judgment_costs(run_ids=selection.run_ids):
        by_judge.setdefault(row[0], []).append(row)
    rows = []
    for judge, js in sorted(by_judge.items()):
        costs = [j[8] for j in js if j[8] is not None]
        lat = [j[9] for j in js]
        rows.append({"judge": judge, "kind": js[0][1], "model": js[0][2], "modes": ", ".join(sorted({j[3] for j in js})),
                     "n_calls": len(js), "n_errors": sum(1 for j in js if j[4]),
                     "n_parse_errors": sum(1 for j in js if j[5]), "input_tokens": sum(j[6] or 0 for j in js),
                     "output_tokens": sum(j[7] or 0 for j in js), "cost_usd": sum(costs) if costs else None,
                     "latency_median_s": median(lat), "latency_p90_s": quantile(lat, 0.9)})
    return pandas().DataFrame(rows, columns=COST_COLUMNS)


def agreement_rows(store: Store, reference: str | None, bootstrap: int) -> pd.DataFrame:
    """Agreement statistics from harness.agreement (rows involving the reference rater)."""
    pd = pandas()
    cols = ["a", "b", "metric", "value", "ci_low", "ci_high", "n"]
    if reference is None:
        return pd.DataFrame(columns=cols)
    from harness.agreement import agreement_table

    df = pd.DataFrame(list(agreement_table(store, bootstrap=bootstrap, seed=0)))
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df[(df["a"] == reference) | (df["b"] == reference)]
    return df[[c for c in cols if c in df.columns] + [c for c in df.columns if c not in cols]]


def build_panel(store: Store, selection: Selection, harm: list[HarmRate], bootstrap: int = 1000) -> JudgePanel:
    pd = pandas()
    counts = output_counts(store)
    reference = choose_reference(counts)
    if reference is None:
        conf = pd.DataFrame(columns=CONFUSION_COLUMNS)
        corrected = pd.DataFrame(columns=CORRECTED_COLUMNS)
    else:
        conf = confusion(counts, reference)
        corrected = corrected_rates(harm, conf)
    return JudgePanel(reference, conf, corrected, agreement_rows(store, reference, bootstrap),
                      judge_cost(store, selection), [])


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
