"""`harness study reproduce` on the release: its numbers equal an independent computation written here.

The independent side follows the study's own preprocessing (psunlpgroup/LLM-Harm preprocess.py): read each
group with pandas (its missing values), drop rows with a missing response or Ranking, turn Group 10's scale
around (1 <-> 3), strip brackets / NA spellings, and renumber harmful ranks from 1. Judges are paired with
triplets through the llama file, the one that carries the responses: each of its rows is the triplet with
its prompt and three responses (or, where its responses are empty, with its prompt), the one in the group of
the row before when two groups share them; the gpt4o and sonnet files list the same
prompts in the same order, so row i of theirs ranks the triplet of llama's row i. Agreement values are
recomputed with pandas, scipy, the krippendorff package and the rbo package.

The shipped sample (three of the 17 groups) runs always; the whole public release runs too when
HARNESS_LLM_HARM_RELEASE names its folder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import shared_data

MODEL_COLS = ["Model 1 - Mistral-7B", "Model 2 - MPT-7B", "Model 3 - StableLM-alpha-7B"]
MODELS = ["mistral-7b", "mpt-7b", "stablelm-alpha-7b"]


def study_codes(ranking: str, reverse: bool) -> list[int]:
    """The study's reading of one ranking string (preprocess.py, re-implemented)."""
    s = ranking.replace("NA", "N/A").replace("N/N/A", "N/A").replace('"', "").replace("[", "").replace("]", "")
    s = s.replace(" ", "").strip().rstrip(",")
    raw = [0 if t == "N/A" else int(t) for t in s.split(",")]
    if reverse:
        raw = [3 if r == 1 else 1 if r == 3 else r for r in raw]
    harmful = sorted(r for r in raw if r)
    rename = {r: i + 1 for i, r in enumerate(harmful)}
    return [rename[r] if r else 0 for r in raw]


def norm(text: object) -> str:
    """Letters and digits only: the study lower-cased prompts and read some files with the wrong code page."""
    return re.sub(r"[^a-z0-9]", "", str(text).casefold())


def _read_group(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, encoding="utf-8-sig")
    except UnicodeDecodeError:
        return pd.read_csv(path, encoding="latin-1")  # what the study does; norm() ignores the mojibake


def human_table(release: Path) -> pd.DataFrame:
    frames = []
    paths = sorted((release / "raw_submissions").glob("*Group*.csv"),
                   key=lambda p: int(re.search(r"Group_(\d+)", p.name, re.IGNORECASE).group(1)))
    for path in paths:
        group = int(re.search(r"Group_(\d+)", path.name, re.IGNORECASE).group(1))
        df = _read_group(path).dropna(subset=[*MODEL_COLS, "Ranking"])
        codes = [study_codes(r, group == 10) for r in df["Ranking"]]
        frames.append(pd.DataFrame({"key": df["Prompt"].map(norm), "group": group,
                                    **{m: [c[i] for c in codes] for i, m in enumerate(MODELS)},
                                    **{f"resp{i}": df[c].map(norm).to_numpy() for i, c in enumerate(MODEL_COLS)}}))
    out = pd.concat(frames, ignore_index=True)
    out["triplet"] = out["group"].astype(str) + "|" + out["key"]
    return out


def _codes(pred: object) -> list[float]:
    m = re.fullmatch(r"\s*([0-3])\s*,\s*([0-3])\s*,\s*([0-3])\s*", str(pred))
    if not m:
        return [np.nan] * 3
    codes = [int(x) for x in m.groups()]
    harmful = [c for c in codes if c]
    return [np.nan] * 3 if len(set(harmful)) != len(harmful) else [float(c) for c in codes]  # a tie: invalid


def llama_pairing(release: Path, humans: pd.DataFrame) -> list[str | None]:
    """The triplet of every row of the llama file (None when no triplet of the import has its prompt and responses)."""
    df = pd.read_csv(release / "llama_predictions.csv", encoding="utf-8-sig")
    out: list[str | None] = []
    for _, row in df.iterrows():
        key = norm(row["prompt"])
        cands = humans[humans["key"] == key]
        resp = [norm(row[c]) if isinstance(row[c], str) and row[c].strip() else "" for c in MODEL_COLS]
        if all(resp):
            cands = cands[(cands["resp0"] == resp[0]) & (cands["resp1"] == resp[1]) & (cands["resp2"] == resp[2])]
        if len(cands) > 1 and out and out[-1] is not None:  # two groups with this prompt (and these responses)
            cands = cands[cands["group"] == int(out[-1].split("|")[0])]
        out.append(cands["triplet"].iloc[0] if len(cands) == 1 else None)
    return out


def judge_table(release: Path, name: str, humans: pd.DataFrame) -> pd.DataFrame:
    df = pd.read_csv(release / f"{name}_predictions.csv", encoding="utf-8-sig")
    llama = pd.read_csv(release / "llama_predictions.csv", encoding="utf-8-sig")
    assert (df["prompt"].map(norm) == llama["prompt"].map(norm)).all(), "the files list the same prompts in order"
    df["triplet"] = llama_pairing(release, humans)
    codes = [_codes(p) for p in df["extracted_pred"]]
    for i, m in enumerate(MODELS):
        df[m] = [c[i] for c in codes]
    return df.dropna(subset=["triplet", *MODELS])[["triplet", *MODELS]]


def independent_agreement(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, float]:
    import krippendorff
    from scipy.stats import kendalltau

    both = a.merge(b, on="triplet", suffixes=("_a", "_b"))
    xa = both[[f"{m}_a" for m in MODELS]].to_numpy(float)
    xb = both[[f"{m}_b" for m in MODELS]].to_numpy(float)
    taus = []
    for ra, rb in zip(xa, xb):
        if len(set(ra)) > 1 and len(set(rb)) > 1:
            taus.append(kendalltau(ra, rb).statistic)
    reliability = np.vstack([xa.ravel(), xb.ravel()])
    out = {"n": len(both), "exact_match": float(np.mean(np.all(xa == xb, axis=1))), "kendall_tau_b": float(np.mean(taus))}
    for level in ("nominal", "ordinal", "interval"):
        out[f"alpha_{level}"] = krippendorff.alpha(reliability_data=reliability, level_of_measurement=level)
    ha, hb = (xa > 0).ravel(), (xb > 0).ravel()
    po = np.mean(ha == hb)
    pe = ha.mean() * hb.mean() + (1 - ha.mean()) * (1 - hb.mean())
    out["cohen_kappa"] = (po - pe) / (1 - pe)
    out["_lists"] = [(lists(ra), lists(rb)) for ra, rb in zip(xa, xb)]  # type: ignore[assignment]
    return out


def lists(codes: np.ndarray) -> list[int]:
    return [int(i) for i in sorted(np.flatnonzero(codes > 0), key=lambda i: -codes[i])]


def _releases() -> list[Any]:
    full = os.environ.get("HARNESS_LLM_HARM_RELEASE")
    return ["sample", pytest.param("full", marks=pytest.mark.skipif(not full, reason="HARNESS_LLM_HARM_RELEASE is not set"))]


@pytest.fixture(scope="module", params=_releases())
def reproduced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    release = shared_data("llm-harm-sample") if request.param == "sample" else \
        Path(os.environ["HARNESS_LLM_HARM_RELEASE"])
    out = tmp_path_factory.mktemp("study")
    from harness.cli import main

    code = main(["study", "reproduce", str(release), "--out", str(out), "--bootstrap", "200"])
    assert code == 0
    result = json.loads((out / "study.json").read_text())
    result["_out"] = out
    result["_release"] = release
    return result


def test_outputs_written(reproduced: dict[str, Any]) -> None:
    out = reproduced["_out"]
    md = (out / "study.md").read_text()
    assert "## Human model harm ranking" in md and "## Judge vs human agreement" in md
    assert "gpt4o" in md and "Friedman" in md
    assert (out / "study.sqlite").exists()
    assert reproduced["settings"]["reverse_groups"] == [10]


def test_human_ranking_equals_independent_computation(reproduced: dict[str, Any]) -> None:
    from scipy.stats import friedmanchisquare

    humans = human_table(reproduced["_release"])
    got = reproduced["human_ranking"]
    assert got["n_items"] == len(humans)
    models = {m["label"]: m for m in got["models"]}
    for m in MODELS:
        col = humans[m]
        assert models[m]["n"] == len(col)
        assert models[m]["mean_code"] == pytest.approx(col.mean())
        assert models[m]["share_harmful"] == pytest.approx((col > 0).mean())
        for k in range(4):
            assert models[m]["code_shares"][str(k)] == pytest.approx((col == k).mean())
    no_na = humans[(humans[MODELS] > 0).all(axis=1)]
    assert got["rank_histogram"]["n_items"] == len(no_na)
    for entry in got["rank_histogram"]["models"]:
        for k in ("1", "2", "3"):
            assert entry["shares"][k] == pytest.approx((no_na[entry["label"]] == int(k)).mean())
    for pair in got["pairwise"]:
        a, b = humans[pair["a"]], humans[pair["b"]]
        assert (pair["a_less_harmful"], pair["b_less_harmful"], pair["ties"]) == (
            int((a < b).sum()), int((b < a).sum()), int((a == b).sum()))
    assert got["test"]["statistic"] == pytest.approx(friedmanchisquare(*(humans[m] for m in MODELS)).statistic)


@pytest.mark.parametrize("judge", ["gpt4o", "sonnet", "llama"])
def test_judge_vs_human_agreement_equals_independent_computation(reproduced: dict[str, Any], judge: str) -> None:
    humans = human_table(reproduced["_release"])
    expected = independent_agreement(humans[["triplet", *MODELS]], judge_table(reproduced["_release"], judge, humans))
    rows = {r["metric"]: r for r in reproduced["agreement"]["judge_vs_human"] if r["a"] == "human" and r["b"] == judge}
    assert rows["exact_match"]["n"] == expected["n"]
    for metric in ("exact_match", "kendall_tau_b", "alpha_nominal", "alpha_ordinal", "alpha_interval", "cohen_kappa"):
        assert rows[metric]["value"] == pytest.approx(expected[metric]), metric
        assert rows[metric]["ci_low"] <= rows[metric]["value"] <= rows[metric]["ci_high"], metric


def test_judge_vs_judge_and_rbo_equal_the_rbo_package(reproduced: dict[str, Any]) -> None:
    rbo = pytest.importorskip("rbo", reason="scripts/test.sh installs rbo==0.1.3 (--no-deps)")
    humans = human_table(reproduced["_release"])
    tables = {j: judge_table(reproduced["_release"], j, humans) for j in ("gpt4o", "sonnet", "llama")}
    tables["human"] = humans[["triplet", *MODELS]]

    def rbo_mean(a: str, b: str) -> float:
        pairs = independent_agreement(tables[a], tables[b])["_lists"]
        vals = [1.0 if not la and not lb else rbo.RankingSimilarity(la, lb).rbo_ext(p=0.9) for la, lb in pairs]
        return float(np.mean(vals))

    for group in ("judge_vs_human", "judge_vs_judge"):
        for row in reproduced["agreement"][group]:
            if row["metric"] == "rbo" and row["a"] in tables and row["b"] in tables:
                assert row["value"] == pytest.approx(rbo_mean(row["a"], row["b"])), (row["a"], row["b"])
    jj = {(r["a"], r["b"]) for r in reproduced["agreement"]["judge_vs_judge"]}
    assert jj == {("gpt4o", "llama"), ("gpt4o", "sonnet"), ("llama", "sonnet")}
    alpha = next(r for r in reproduced["agreement"]["judge_vs_judge"]
                 if (r["a"], r["b"], r["metric"]) == ("gpt4o", "sonnet", "alpha_ordinal"))
    assert alpha["value"] == pytest.approx(independent_agreement(tables["gpt4o"], tables["sonnet"])["alpha_ordinal"])


def test_cli_prints_tables_and_rejects_bad_paths(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    release = shared_data("llm-harm-sample")
    r = cli("study", "reproduce", release, "--out", tmp_path / "o", "--bootstrap", "20")
    assert r.code == 0, r.err
    assert "judge vs human" in r.out and "stablelm-alpha-7b" in r.out and "study.json" in r.out
    r = cli("study", "reproduce", tmp_path / "missing", "--out", tmp_path / "o2")
    assert r.code == 2 and "does not exist" in r.err
    r = cli("study", "reproduce", release, "--out", tmp_path / "o3", "--reverse-groups", "ten")
    assert r.code == 2 and "--reverse-groups" in r.err


def expert_pairing(release: Path, humans: pd.DataFrame) -> list[str | None]:
    """The triplet each expert row re-ranks: its prompt's, in the group of its block of five rows (a block's group
    being the one most of its prompts come from)."""
    df = pd.read_csv(release / "raw_submissions" / "expert_annotations.csv", encoding="utf-8-sig")
    keys = [norm(p) for p in df["prompt"]]
    groups_of = [sorted(set(humans[humans["key"] == k]["group"])) for k in keys]
    out: list[str | None] = []
    for i, k in enumerate(keys):
        block = [g[0] for g in groups_of[i // 5 * 5:i // 5 * 5 + 5] if len(g) == 1]
        group = max(set(block), key=block.count) if block else None
        cands = groups_of[i] if len(groups_of[i]) <= 1 else [g for g in groups_of[i] if g == group]
        out.append(f"{cands[0]}|{k}" if len(cands) == 1 else None)
    return out


def test_every_judge_and_expert_triplet_is_paired(reproduced: dict[str, Any]) -> None:
    """The study's counts: on the whole release 984 triplets for GPT-4o and Sonnet, 983 for Llama (one tie) and 81
    for the expert; on the sample, what the independent pairing finds."""
    release = reproduced["_release"]
    humans = human_table(release)
    n = {r["b"]: r["n"] for r in reproduced["agreement"]["judge_vs_human"]
         if r["a"] == "human" and r["metric"] == "exact_match"}
    for judge in ("gpt4o", "sonnet", "llama"):
        assert n[judge] == len(judge_table(release, judge, humans)), judge
    experts = [t for t in expert_pairing(release, humans) if t is not None]
    (expert_n,) = [r["n"] for r in reproduced["agreement"]["human_vs_expert"] if r["metric"] == "exact_match"]
    assert expert_n == len(set(experts))
    if len(humans) == 984:  # the whole release
        assert (n["gpt4o"], n["sonnet"], n["llama"], expert_n) == (984, 984, 983, 81)
