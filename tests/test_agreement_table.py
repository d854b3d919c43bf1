"""The agreement table and the model harm ranking over small rating sets worked out by hand, the store, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from storehelp import add_rows, table_rows

from harness.agreement import agreement_rows, agreement_table, model_harm_ranking
from harness.agreement.table import RboOptions
from harness.keys import item_id as item_id_for_prompt
from harness.store import Store

MODELS = ["m1", "m2", "m3"]


def rank_rows(rater: str, item: str, codes: list[float | None], annotator: str = "", kind: str = "human",
              category: str | None = None, models: list[str] = MODELS) -> list[dict[str, Any]]:
    out = []
    for model, code in zip(models, codes):
        out.append({"rater": rater, "rater_kind": kind, "annotator": annotator, "task": "rank", "item_id": item,
                    "category": category, "model": model, "variant": None, "code": code,
                    "harmful": None if code is None else int(code > 0), "valid": 0 if code is None else 1})
    return out


def by_metric(rows: list[dict[str, Any]], a: str, b: str, task: str = "rank",
              category: Any = None) -> dict[str, dict[str, Any]]:
    return {r["metric"]: r for r in rows
            if r["a"] == a and r["b"] == b and r["task"] == task and r.get("category") == category}


# Three items; human vs judge j:
#   i1: human 3,2,1   judge 3,2,1   (identical)
#   i2: human 0,1,2   judge 0,2,1   (top two swapped)
#   i3: human 0,0,0   judge 1,0,0   (only the judge finds harm)
CASE = (rank_rows("human", "i1", [3, 2, 1]) + rank_rows("j", "i1", [3, 2, 1], kind="judge")
        + rank_rows("human", "i2", [0, 1, 2]) + rank_rows("j", "i2", [0, 2, 1], kind="judge")
        + rank_rows("human", "i3", [0, 0, 0]) + rank_rows("j", "i3", [1, 0, 0], kind="judge"))


def test_pair_metrics_by_hand() -> None:
    got = by_metric(agreement_rows(CASE, bootstrap=0), "human", "j")
    # RBO per item: 1 (identical), 0.9 ([m3,m2] vs [m2,m3]), 0 (one list empty) -> mean 0.6333
    assert got["rbo"]["value"] == pytest.approx(1.9 / 3)
    assert got["rbo"]["n"] == 3
    # tau-b: 1 and 1/3 (i2: pairs +1, +1, -1 over 3 untied pairs); i3 undefined (human all 0)
    assert got["kendall_tau_b"]["value"] == pytest.approx(2 / 3)
    assert got["kendall_tau_b"]["n"] == 2
    assert got["exact_match"]["value"] == pytest.approx(1 / 3)
    # harmful yes/no per output: 5 both yes, 3 both no, 1 judge-only; po = 8/9, pe = (5*6 + 4*3)/81 -> 30/39
    assert got["cohen_kappa"]["value"] == pytest.approx(30 / 39)
    # coincidences over codes: n0 = 7, n1 = 5, n2 = 4, n3 = 2 (n = 18), off-diagonal total 6
    # nominal alpha = 1 - 17 * 6 / (18^2 - (49 + 25 + 16 + 4)) = 1 - 102 / 230
    assert got["alpha_nominal"]["value"] == pytest.approx(1 - 102 / 230)
    assert {"alpha_ordinal", "alpha_interval", "spearman"} <= set(got)
    assert all(r["ci_low"] is None and r["ci_high"] is None for r in got.values())
    assert set(next(iter(got.values()))) >= {"a", "b", "metric", "value", "ci_low", "ci_high", "n", "task"}


def test_rbo_conventions_are_options() -> None:
    got = by_metric(agreement_rows(CASE, bootstrap=0, rbo=RboOptions(one_empty=None)), "human", "j")
    assert got["rbo"]["value"] == pytest.approx(1.9 / 2) and got["rbo"]["n"] == 2
    # both-empty: add an item where neither finds harm; default counts it as 1
    rows = CASE + rank_rows("human", "i4", [0, 0, 0]) + rank_rows("j", "i4", [0, 0, 0], kind="judge")
    assert by_metric(agreement_rows(rows, bootstrap=0), "human", "j")["rbo"]["value"] == pytest.approx(2.9 / 4)
    skip = by_metric(agreement_rows(rows, bootstrap=0, rbo=RboOptions(both_empty=None)), "human", "j")
    assert skip["rbo"]["value"] == pytest.approx(1.9 / 3)


def test_perfect_agreement() -> None:
    rows = []
    for i, codes in enumerate([[3, 2, 1], [0, 1, 2], [1, 0, 0]]):
        rows += rank_rows("human", f"i{i}", codes) + rank_rows("j", f"i{i}", codes, kind="judge")
    got = by_metric(agreement_rows(rows, bootstrap=200), "human", "j")
    for metric in ("rbo", "alpha_nominal", "alpha_ordinal", "alpha_interval", "kendall_tau_b", "spearman",
                   "exact_match", "cohen_kappa"):
        assert got[metric]["value"] == pytest.approx(1.0), metric
        assert got[metric]["ci_low"] == pytest.approx(1.0), metric  # every resample agrees perfectly too


def test_inverted_rankings() -> None:
    rows = []
    for i in range(2):
        rows += rank_rows("human", f"i{i}", [1, 2, 3]) + rank_rows("j", f"i{i}", [3, 2, 1], kind="judge")
    got = by_metric(agreement_rows(rows, bootstrap=0), "human", "j")
    assert got["kendall_tau_b"]["value"] == pytest.approx(-1.0)
    assert got["spearman"]["value"] == pytest.approx(-1.0)
    assert got["exact_match"]["value"] == 0.0
    # interval alpha: o13 = o31 = 4, o22 = 4, n_c = 4 each, n = 12: Do = 32, De = 2 (16 + 64 + 16) = 192
    assert got["alpha_interval"]["value"] == pytest.approx(1 - 11 * 32 / 192)
    # RBO of [m3,m2,m1] vs [m1,m2,m3]: X = 0, 1, 3 -> (0.1/0.9)(0.405 + 0.729) + 0.729 (same set at depth 3)
    assert got["rbo"]["value"] == pytest.approx(0.1 / 0.9 * 1.134 + 0.729)


def test_invalid_ratings_are_left_out_not_counted_as_harmless() -> None:
    rows = CASE + rank_rows("human", "i5", [1, 2, 3]) + rank_rows("j", "i5", [None, None, None], kind="judge")
    got = by_metric(agreement_rows(rows, bootstrap=0), "human", "j")
    assert got["exact_match"]["n"] == 3 and got["exact_match"]["value"] == pytest.approx(1 / 3)


def test_by_category_rows() -> None:
    rows = (rank_rows("human", "i1", [3, 2, 1], category="a") + rank_rows("j", "i1", [3, 2, 1], kind="judge", category="a")
            + rank_rows("human", "i2", [0, 1, 2], category="b") + rank_rows("j", "i2", [0, 2, 1], kind="judge", category="b"))
    out = agreement_rows(rows, bootstrap=50, by_category=True)
    assert by_metric(out, "human", "j")["exact_match"]["value"] == pytest.approx(0.5)
    assert by_metric(out, "human", "j", category="a")["exact_match"]["value"] == 1.0
    assert by_metric(out, "human", "j", category="b")["exact_match"]["value"] == 0.0
    assert by_metric(out, "human", "j", category="b")["rbo"]["value"] == pytest.approx(0.9)
    assert "category" not in agreement_rows(rows, bootstrap=0)[0]


def test_inter_annotator_rows_and_annotator_merge() -> None:
    # two annotators of 'human' rank the same two items; x and y disagree on item i2 only
    rows = (rank_rows("human", "i1", [3, 2, 1], annotator="x") + rank_rows("human", "i1", [3, 2, 1], annotator="y")
            + rank_rows("human", "i2", [1, 0, 0], annotator="x") + rank_rows("human", "i2", [0, 0, 1], annotator="y")
            + rank_rows("j", "i1", [3, 2, 1], kind="judge"))
    out = agreement_rows(rows, bootstrap=0)
    pair = by_metric(out, "human:x", "human:y")
    assert pair["exact_match"]["value"] == pytest.approx(0.5)
    within = by_metric(out, "human", "human")
    # harmful per output (x, y): i1 all (1,1); i2 (1,0), (0,0), (0,1)
    # Fleiss, m = 2: P_u = 1,1,1,0,1,0 -> P = 4/6; p_yes = 8/12 -> Pe = 4/9 + 1/9 = 5/9 -> (2/3 - 5/9)/(4/9) = 1/4
    assert within["fleiss_kappa"]["value"] == pytest.approx(0.25)
    assert within["fleiss_kappa"]["annotators_per_output"] == 2
    assert "alpha_ordinal" in within
    # against the judge, human's value per output is the annotators' mean: i1 identical -> exact on i1
    hj = by_metric(out, "human", "j")
    assert hj["exact_match"]["value"] == 1.0 and hj["exact_match"]["n"] == 1
    only_x = by_metric(agreement_rows(rows, raters=["human:x", "j"], bootstrap=0), "human:x", "j")
    assert only_x["exact_match"]["value"] == 1.0


def test_label_task_metrics() -> None:
    def lab(rater: str, item: str, label: str) -> dict[str, Any]:
        return {"rater": rater, "rater_kind": "human", "annotator": "", "task": "label", "item_id": item,
                "model": "m", "variant": "release", "code": float(label == "harmful"), "label": label,
                "harmful": int(label == "harmful"), "valid": 1}
    labels_a = ["harmful", "harmful", "not_harmful", "not_harmful"]
    labels_b = ["harmful", "not_harmful", "not_harmful", "not_harmful"]
    rows = [lab("a", f"i{i}", x) for i, x in enumerate(labels_a)] + [lab("b", f"i{i}", x) for i, x in enumerate(labels_b)]
    got = by_metric(agreement_rows(rows, bootstrap=0), "a", "b", task="label")
    assert got["exact_match"]["value"] == 0.75
    # confusion [[1,1],[0,2]]: po = 3/4, pe = (2*1 + 2*3)/16 = 1/2 -> kappa 1/2
    assert got["cohen_kappa"]["value"] == pytest.approx(0.5)
    assert "rbo" not in got


def test_model_harm_ranking_by_hand() -> None:
    human = [r for r in CASE if r["rater"] == "human"]
    res = model_harm_ranking(human, rater="human")
    models = {m["label"]: m for m in res["models"]}
    # m1 codes 3,0,0; m2 2,1,0; m3 1,2,0: every mean code is 1
    assert models["m1"]["code_shares"] == pytest.approx({"0": 2 / 3, "1": 0.0, "2": 0.0, "3": 1 / 3})
    assert models["m2"]["share_harmful"] == pytest.approx(2 / 3)
    assert all(m["mean_code"] == pytest.approx(1.0) for m in res["models"])
    # only i1 has no N/A: m1 got 3, m2 got 2, m3 got 1
    hist = {m["label"]: m["shares"] for m in res["rank_histogram"]["models"]}
    assert res["rank_histogram"]["n_items"] == 1
    assert hist["m1"] == {"1": 0.0, "2": 0.0, "3": 1.0} and hist["m3"]["1"] == 1.0
    pair = next(p for p in res["pairwise"] if p["a"] == "m1" and p["b"] == "m2")
    # i1: m2 less harmful; i2: m1 less harmful; i3: tie -> sign test on 1 vs 1: p = 1
    assert (pair["a_less_harmful"], pair["b_less_harmful"], pair["ties"]) == (1, 1, 1)
    assert pair["p_value"] == pytest.approx(1.0)
    # Friedman: within-item ranks m1,m2,m3 = (3,2,1), (1,2,3), (2,2,2): equal rank sums -> statistic 0
    assert res["test"]["name"] == "friedman" and res["test"]["statistic"] == pytest.approx(0.0)


def test_model_harm_ranking_significance_matches_scipy() -> None:
    from scipy.stats import binomtest, friedmanchisquare

    rows = []
    blocks = [[0, 1, 2], [0, 2, 1], [1, 2, 3], [0, 1, 2], [0, 0, 1], [1, 3, 2], [0, 1, 2], [0, 2, 1]]
    for i, codes in enumerate(blocks):
        rows += rank_rows("human", f"i{i}", codes)
    res = model_harm_ranking(rows)
    cols = list(zip(*blocks))
    assert res["test"]["statistic"] == pytest.approx(friedmanchisquare(*cols).statistic)
    assert res["test"]["p_value"] == pytest.approx(friedmanchisquare(*cols).pvalue)
    pair = next(p for p in res["pairwise"] if p["a"] == "m1" and p["b"] == "m3")
    # m1 < m3 in all 8 blocks -> exact two-sided sign test p = 2 / 2^8
    assert pair["a_less_harmful"] == 8 and pair["p_value"] == pytest.approx(2 / 256)
    assert pair["p_value"] == pytest.approx(binomtest(8, 8, 0.5).pvalue)
    assert pair["p_holm"] >= pair["p_value"]
    assert res["models"][0]["label"] == "m1"  # least harmful first


def test_agreement_table_on_our_own_run_and_its_judge(small_store: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Humans rank our own run's outputs by prompt_id (linked to the generations); a local judge rates them too."""
    human = {"disc-001": ("2", "1"), "off-001": ("N/A", "1"), "priv-001": ("1", "2"), "ben-001": ("N/A", "N/A"),
             "ben-021": ("N/A", "N/A")}
    judge = {"disc-001": (2, 1), "off-001": (1, 0), "priv-001": (1, 2), "ben-001": (0, 0), "ben-021": (1, 0)}
    csv_path = small_store.parent / "human.csv"
    lines = ["prompt_id,annotator,model,variant,rank"]
    for pid, (q4, q8) in human.items():
        lines += [f"{pid},ann,smollm2-135m-instruct,Q4_1,{q4}", f"{pid},ann,smollm2-135m-instruct,Q8_0,{q8}"]
    csv_path.write_text("\n".join(lines) + "\n")
    r = cli("humans", "import", "rankings-csv", csv_path, "--store", small_store)
    assert r.code == 0, r.err
    with Store.open(small_store) as store:
        gens = table_rows(store, "generations", "prompt_id IN ({})".format(",".join("?" * len(judge))), list(judge))
        keys = {(g["prompt_id"], g["variant"]): g for g in gens}
        assert len(keys) == 10
        stored = table_rows(store, "ratings", "rater = 'human'")
        assert len(stored) == 10 and all(r["sample_key"] for r in stored)
        assert {r["sample_key"] for r in stored} == {g["sample_key"] for g in gens}
        judge_rows = []
        for pid, codes in judge.items():
            for variant, code in zip(("Q4_1", "Q8_0"), codes):
                g = keys[(pid, variant)]
                judge_rows.append({"rating_key": f"tj:{g['sample_key']}", "source": "judge:tiny", "rater": "tiny-judge",
                                   "rater_kind": "judge", "task": "rank", "item_id": item_id_for_prompt(g["prompt"]),
                                   "model": g["model"], "variant": variant, "sample_key": g["sample_key"],
                                   "code": code, "harmful": int(code > 0), "valid": 1})
        add_rows(store, "ratings", judge_rows)
        rows = agreement_table(store, bootstrap=100)
    got = by_metric(rows, "human", "tiny-judge")
    # same ranking on disc, priv and ben-001 (both empty) -> 3/5; RBO 1, 0, 1, 1 (both empty), 0 -> 3/5
    assert got["exact_match"]["value"] == pytest.approx(0.6) and got["exact_match"]["n"] == 5
    assert got["rbo"]["value"] == pytest.approx(0.6)
    assert got["rbo"]["ci_low"] <= 0.6 <= got["rbo"]["ci_high"]

    r = cli("agree", "--store", small_store, "--json", "--bootstrap", "0", "--raters", "human,tiny-judge")
    assert r.code == 0, r.err
    printed = json.loads(r.out)
    assert {row["metric"] for row in printed} >= {"rbo", "alpha_ordinal", "alpha_interval", "alpha_nominal",
                                                   "kendall_tau_b", "exact_match"}
    assert next(x for x in printed if x["metric"] == "exact_match")["value"] == pytest.approx(0.6)
    r = cli("agree", "--store", small_store, "--bootstrap", "0")
    assert r.code == 0 and "tiny-judge" in r.out and "rbo" in r.out


def test_agree_cli_errors(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "none.sqlite"
    r = cli("agree", "--store", missing)
    assert r.code == 2 and "does not exist" in r.err and not missing.exists()
    store = tmp_path / "s.sqlite"
    with Store.open(store) as s:
        add_rows(s, "ratings", [{"rating_key": f"k{i}", "source": "t", "rater": row["rater"],
                                   "rater_kind": row["rater_kind"], "task": "rank", "item_id": row["item_id"],
                                   "model": row["model"], "code": row["code"], "harmful": row["harmful"], "valid": 1}
                                  for i, row in enumerate(CASE)])
    for args, text in ((["--raters", "human"], "at least two"), (["--raters", "human,nobody"], "nobody"),
                       (["--bootstrap", "-1"], "is outside"), (["--rbo-p", "1.5"], "outside")):
        r = cli("agree", "--store", store, *args)
        assert r.code == 2, args
        assert text in r.err and r.err.count("\n") == 1
    r = cli("humans", "ranking", "--store", store, "--rater", "nobody")
    assert r.code == 2 and "nobody" in r.err
    r = cli("humans", "ranking", "--store", store, "--json")
    assert r.code == 0
    assert {m["label"] for m in json.loads(r.out)["models"]} == set(MODELS)
    assert not math.isnan(json.loads(r.out)["models"][0]["mean_code"])
