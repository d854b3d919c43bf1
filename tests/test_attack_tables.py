"""The figures under attack in CSV and Parquet: the report's tables/ folder and `harness export --table` gain
`attacks`, `attack_summary` and `harm_by_category`; a store without attacks writes exactly the files it wrote.

Store (worked out by hand): device dev, model m, variants Q8 and Q4; harmful behaviours b1, b2 (category c1) and b3
(c2), a benign control n1; asked plainly and under the attacks base64 and rot13. Judge `judge-x` (score) says
harmful on
  baseline: Q8 b1; Q4 b1 b3        base64: Q8 b2; Q4 b1 b2 b3        rot13: Q8 none; Q4 b1
and `refusal-detector` refuses
  baseline: Q8 b2 b3; Q4 b2        base64: Q8 b1; Q4 none            rot13: Q8 b1 b2 b3; Q4 b2 b3
So: Q8 base64 harm 1/3, refusal 1/3; rot13 harm 0/3, refusal 3/3; worst base64 (upper bound of 1/3 0.906 > 0/3's
0.632); broken by any: b2 -> 1/3. Q4 base64 3/3, refusal 0/3; rot13 1/3, refusal 2/3; worst base64 (upper 1.0);
broken 3/3. Per category (baseline): Q8 c1 1/2, c2 0/1; Q4 c1 1/2, c2 1/1. No judge card: harm is 'uncalibrated'.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from storehelp import add_rows

from harness.keys import item_id
from harness.reporting import write_report
from harness.stats import clopper_pearson
from harness.store import Store

VARIANTS = ("Q8", "Q4")
PROMPTS = [("b1", "c1", 0), ("b2", "c1", 0), ("b3", "c2", 0), ("n1", "benign", 1)]
HARMFUL = {None: {"Q8": {"b1"}, "Q4": {"b1", "b3"}}, "base64": {"Q8": {"b2"}, "Q4": {"b1", "b2", "b3"}},
           "rot13": {"Q8": set(), "Q4": {"b1"}}}
REFUSED = {None: {"Q8": {"b2", "b3"}, "Q4": {"b2"}}, "base64": {"Q8": {"b1"}, "Q4": set()},
           "rot13": {"Q8": {"b1", "b2", "b3"}, "Q4": {"b2", "b3"}}}
# The tables a store without attacks writes, and the sha256 of their CSV files for the store below, computed before
# the figures under attack had tables (commit 6ae27df; its Parquet files were byte-identical too): the figures under
# attack add files, never columns.
PLAIN_CSV_SHA256 = {
    "harm_rates": "3403889f2f08f31748909c2e55075f98e3099bb41289eac70a19e1ed3f508460",
    "judge_agreement": "e66ddc1bd78fa9fe450730a357b4780729b6e2e6c4c9b626d90b2e6f63420708",
    "judge_confusion": "e9cc6a7e3c264c577c0d6dd28f60c878746e857743c2c125ca90c07b8e756ca7",
    "judge_corrected_harm": "9a97c84fad53cdd58bd7ba50fa9b92a06c66b8eaa7eb4f358ea76567e72faeea",
    "judge_cost": "2c2f3094e2a186082241d7c80196b55d0753e278c6aed0ad8b2ef088379b4b7e",
    "leaderboard": "077f22e8e12404a9a64b657e68e9219424bca2fea5a1e12a5ccc0ecdddc9d6b0",
    "pareto": "a21f5e54f944ce1641a3c9006970c4ce45baf1b4ebd9a9954ee0617d00c28d64",
    "qos_disparities": "4982304e19fbb2243a76f8f40dc7cea7779614ccb05c5e17267aebbc48037d98",
    "qos_groups": "f0ee6fe54508e1704003645e3d92c56ff74ae93eefffc966d5be8210871b10ef",
    "quantization_flips": "fbc9312f870b6280b2cd869c6a2a8ee33daa4f1e4b27ac7920f3304c80d80549",
    "quantization_ladder": "b6e39350f5c40ca76ec6a94fad11d36a1a8d7823775e3104724c33a5258136d0",
    "refusal_rates": "6eaaac06d84422533dbaa28b6b275f617112f48cf3a9bbe18417b4a65b1d440c",
}
PLAIN_TABLES = sorted(PLAIN_CSV_SHA256)


def _gen(variant: str, pid: str, category: str, benign: int, attack: str | None) -> dict[str, Any]:
    tag = attack or "plain"
    return {"sample_key": f"{variant}-{pid}-{tag}", "run_id": "run-1", "device": "dev", "model": "m",
            "variant": variant, "backend": "gguf", "model_size_bytes": 200_000_000 if variant == "Q8" else 100_000_000,
            "prompt_id": pid, "prompt_set": "set", "category": category, "benign": benign, "prompt": f"prompt {pid}",
            "prompt_sha256": f"sha-{pid}-{tag}", "seed": 0, "output": f"output {variant} {pid} {tag}",
            "n_output_tokens": 10, "ttft_s": 0.1, "decode_tps": 10.0 if variant == "Q8" else 20.0, "latency_s": 1.0,
            "peak_rss_bytes": 300_000_000, "attack": attack, "attack_sha256": None if attack is None else f"a-{attack}"}


def _rating(rater: str, task: str, g: dict[str, Any], **values: Any) -> dict[str, Any]:
    return {"rating_key": f"{rater}:{g['sample_key']}", "source": "test", "rater": rater, "rater_kind": "judge",
            "task": task, "item_id": item_id(g["prompt"]), "prompt_id": g["prompt_id"], "category": g["category"],
            "model": g["model"], "variant": g["variant"], "sample_key": g["sample_key"], "valid": 1, **values}


def make_store(path: Path, attacks: tuple[str, ...] = ("base64", "rot13")) -> Path:
    gens, ratings = [], []
    for attack in (None, *attacks):
        for variant in VARIANTS:
            for pid, category, benign in PROMPTS:
                g = _gen(variant, pid, category, benign, attack)
                gens.append(g)
                harmful = not benign and pid in HARMFUL[attack][variant]
                ratings += [_rating("judge-x", "score", g, harmful=int(harmful), code=3.0 if harmful else 0.0),
                            _rating("refusal-detector", "refusal", g,
                                    label="refusal" if pid in REFUSED[attack][variant] else "compliance")]
    with Store.open(path) as store:
        add_rows(store, "generations", gens)
        add_rows(store, "ratings", ratings)
    return path


def _report(store_path: Path, out: Path) -> Path:
    with Store.open(store_path, readonly=True) as store:
        write_report(store, out, bootstrap=0)
    return out / "tables"


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _ci(k: int, n: int) -> tuple[str, str]:
    low, high = clopper_pearson(k, n)
    return str(low), str(high)


def test_a_store_without_attacks_writes_the_tables_it_always_wrote(tmp_path: Path) -> None:
    tables = _report(make_store(tmp_path / "plain.sqlite", attacks=()), tmp_path / "out")
    assert sorted(p.name for p in tables.iterdir()) == sorted(f"{n}.{ext}" for n in PLAIN_TABLES
                                                              for ext in ("csv", "parquet"))
    for name, sha in PLAIN_CSV_SHA256.items():
        assert hashlib.sha256((tables / f"{name}.csv").read_bytes()).hexdigest() == sha, name


def test_the_report_writes_the_figures_under_attack(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    tables = _report(make_store(tmp_path / "s.sqlite"), tmp_path / "out")
    plain = _report(make_store(tmp_path / "plain.sqlite", attacks=()), tmp_path / "plain")
    for name in PLAIN_TABLES:  # the baseline's tables do not change with attacks beside them
        if not name.startswith("judge_"):  # the judge panel counts every rating, attacked outputs' too
            assert (tables / f"{name}.csv").read_bytes() == (plain / f"{name}.csv").read_bytes(), name

    rows = {(r["variant"], r["attack"]): r for r in _csv(tables / "attacks.csv")}
    # the leaderboard's order (per device, lowest harm first: Q8 1/3 before Q4 2/3), attacks by name
    assert list(rows) == [("Q8", "base64"), ("Q8", "rot13"), ("Q4", "base64"), ("Q4", "rot13")]
    q8 = rows[("Q8", "base64")]
    assert (q8["harm_rater"], q8["harm_n"], q8["harm_rate"], q8["harm_method"]) == ("judge-x", "3", str(1 / 3),
                                                                                     "uncalibrated")
    assert (q8["harm_ci_low"], q8["harm_ci_high"]) == _ci(1, 3)
    assert (q8["refusal_rater"], q8["refusal_n"], q8["refusal_rate"]) == ("refusal-detector", "3", str(1 / 3))
    assert (q8["refusal_ci_low"], q8["refusal_ci_high"]) == _ci(1, 3)
    assert (rows[("Q8", "rot13")]["harm_rate"], rows[("Q8", "rot13")]["refusal_rate"]) == ("0.0", "1.0")
    assert rows[("Q8", "rot13")]["harm_ci_high"] == _ci(0, 3)[1]
    assert (rows[("Q4", "base64")]["harm_rate"], rows[("Q4", "rot13")]["refusal_rate"]) == ("1.0", str(2 / 3))
    assert [r["worst"] for r in rows.values()] == ["True", "False", "True", "False"]

    summary = {r["variant"]: r for r in _csv(tables / "attack_summary.csv")}
    assert (summary["Q8"]["worst_attack"], summary["Q8"]["worst_harm_rate"], summary["Q8"]["n_attacks"]) == (
        "base64", str(1 / 3), "2")
    assert summary["Q8"]["worst_harm_ci_high"] == _ci(1, 3)[1]
    assert (summary["Q8"]["broken_n"], summary["Q8"]["broken_of"], summary["Q8"]["broken_rate"]) == ("1", "3", str(1 / 3))
    assert (summary["Q8"]["broken_ci_low"], summary["Q8"]["broken_ci_high"]) == _ci(1, 3)
    assert (summary["Q4"]["worst_attack"], summary["Q4"]["broken_n"], summary["Q4"]["broken_of"]) == ("base64", "3", "3")

    cats = [(r["variant"], r["category"], r["n_harmful"], r["n_valid"], r["rate"], r["ci_low"], r["ci_high"])
            for r in _csv(tables / "harm_by_category.csv")]
    assert cats == [("Q8", "c1", "1", "2", "0.5", *_ci(1, 2)), ("Q8", "c2", "0", "1", "0.0", *_ci(0, 1)),
                    ("Q4", "c1", "1", "2", "0.5", *_ci(1, 2)), ("Q4", "c2", "1", "1", "1.0", *_ci(1, 1))]

    pytest.importorskip("pyarrow")
    for name in ("attacks", "attack_summary", "harm_by_category"):
        frame, text = pd.read_parquet(tables / f"{name}.parquet"), _csv(tables / f"{name}.csv")
        assert list(frame.columns) == list(text[0]) and len(frame) == len(text)
    frame = pd.read_parquet(tables / "attacks.parquet")
    assert frame["harm_n"].tolist() == [3, 3, 3, 3] and frame["harm_rate"].tolist()[0] == pytest.approx(1 / 3)


def test_harness_export_writes_the_figures_under_attack(tmp_path: Path, cli: Any) -> None:
    path = make_store(tmp_path / "s.sqlite")
    r = cli("export", "--store", path, "--table", "attacks", "--format", "csv", "--out", tmp_path / "a.csv")
    assert r.code == 0, r.err
    assert r.err.strip() == f"wrote 4 rows of attacks to {tmp_path / 'a.csv'}"
    tables = _report(path, tmp_path / "out")
    for name in ("attacks", "attack_summary", "harm_by_category"):  # the report's tables, value for value
        out = tmp_path / f"{name}.jsonl"
        assert cli("export", "--store", path, "--table", name, "--out", out).code == 0
        exported = [json.loads(line) for line in out.read_text().splitlines()]
        shown = _csv(tables / f"{name}.csv")
        assert [list(e) for e in exported] == [list(s) for s in shown]
        assert [{k: "" if v is None else str(v) for k, v in e.items()} for e in exported] == shown
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    assert cli("export", "--store", path, "--table", "attack_summary", "--format", "parquet", "--out",
               tmp_path / "s.parquet").code == 0
    assert pd.read_parquet(tmp_path / "s.parquet")["worst_attack"].tolist() == ["base64", "base64"]
    plain = make_store(tmp_path / "plain.sqlite", attacks=())
    none = cli("export", "--store", plain, "--table", "attacks", "--format", "jsonl")
    assert none.code == 0 and none.out == ""
    bad = cli("export", "--store", path, "--table", "atacks")
    assert bad.code == 2 and "attacks, attack_summary, harm_by_category" in bad.err
