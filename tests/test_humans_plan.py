"""Labelling plans: how many labels a width needs (worked by hand), which items the strategies pick, the plan file
and its checks, and `harness humans sample` on a real run's store."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from storehelp import count

from harness import keys
from harness.errors import UsageError
from harness.humans.plan import (
    WilsonNeed,
    draw_plan,
    labels_for_width,
    output_uncertainty,
    quotas_for_width,
    read_plan,
    wilson_width,
    write_plan,
)
from harness.records import Generation, Rating
from harness.stats import Z_95, wilson_interval
from harness.store import Store

Z2 = Z_95 * Z_95


def test_labels_for_width_worked_by_hand() -> None:
    # p = 0 (or 1): the Wilson interval is [0, z^2 / (n + z^2)], so width <= W needs n >= z^2 (1 - W) / W.
    # W = 0.1: n >= 9 z^2 = 34.57 -> 35; W = 0.2: n >= 4 z^2 = 15.37 -> 16.
    assert labels_for_width(0.0, 0.1) == 35 == labels_for_width(1.0, 0.1)
    assert labels_for_width(0.0, 0.2) == 16
    assert Z2 / (35 + Z2) <= 0.1 < Z2 / (34 + Z2)
    # p = 0.5, W = 0.2: the normal approximation says z^2 / 4 / 0.1^2 = 96.04 -> 97; Wilson is narrower:
    # n = 93: 2 z sqrt(.25/93 + z^2/(4*93^2)) / (1 + z^2/93) = 0.19918; n = 92: 0.20020.
    assert labels_for_width(0.5, 0.2) == 93
    assert labels_for_width(None, 0.2) == 93  # no judge rate: the worst case
    # Cross-check with the interval itself where p*n is whole: n = 94, k = 47.
    lo, hi = wilson_interval(47, 94)
    assert lo is not None and hi is not None and wilson_width(0.5, 94) == pytest.approx(hi - lo)
    # Any p: the answer is the first n whose width fits.
    for p in (0.03, 0.1, 0.27, 0.6):
        n = labels_for_width(p, 0.08)
        assert wilson_width(p, n) <= 0.08 < wilson_width(p, n - 1)
    for bad in (0.0, -0.1, 1.5, math.nan):
        with pytest.raises(UsageError, match="--target-width"):
            labels_for_width(0.5, bad)


def test_a_better_estimator_can_stand_in() -> None:
    variants = [("d", "m", "a"), ("d", "m", "b")]
    wilson = quotas_for_width(variants, 0.2, WilsonNeed({("d", "m", "a"): 0.0}))
    assert wilson == {("d", "m", "a"): 16, ("d", "m", "b"): 93}

    def ppi_like(variant: tuple[str, str, str], width: float) -> int:  # e.g. the PPI power analysis
        return 7 if variant[2] == "a" else 11

    assert quotas_for_width(variants, 0.2, ppi_like) == {("d", "m", "a"): 7, ("d", "m", "b"): 11}


def test_output_uncertainty() -> None:
    assert output_uncertainty(0, 0, 0) == 1.0  # no verdict: nothing known
    assert output_uncertainty(2, 1, 0) == 1.0  # judges split evenly
    assert output_uncertainty(4, 1, 0) == pytest.approx(0.75)  # 4 * 1/4 * 3/4
    assert output_uncertainty(3, 3, 0) == 0.0 and output_uncertainty(3, 0, 0) == 0.0
    assert output_uncertainty(1, 1, 1) == pytest.approx(0.5)  # settled, but half the answers unparseable


def _gen(prompt: str, variant: str, category: str, device: str = "d1", benign: bool = False) -> Generation:
    return Generation(sample_key=f"{device}-{variant}-{prompt}", run_id="r", device=device, model="m",
                      variant=variant, backend="b", prompt_id=prompt, prompt=f"prompt {prompt}", category=category,
                      benign=benign, prompt_sha256=keys.text_sha256(f"prompt {prompt}"),
                      output=f"answer to {prompt}, take {variant[-1]}")


def _store_gens() -> list[Generation]:
    gens = []
    for prompt, cat in (("a1", "c1"), ("a2", "c1"), ("a3", "c1"), ("a4", "c1"), ("b1", "c2"), ("b2", "c2")):
        gens += [_gen(prompt, "v1", cat), _gen(prompt, "v2", cat)]
    gens += [_gen("ok", "v1", "benign", benign=True), _gen("ok", "v2", "benign", benign=True)]
    gens.append(Generation(sample_key="failed", run_id="r", device="d1", model="m", variant="v1", backend="b",
                           prompt_id="a1", prompt="prompt a1", category="c1", error="boom"))
    return gens


def test_stratified_round_robin_over_categories() -> None:
    plan = draw_plan(_store_gens(), per_variant=3, seed=0)
    cats = [it.category for it in plan.items]
    assert cats[:3] == ["c1", "c2", "c1"] and len(plan.items) == 3  # c1, c2, c1: then every variant has 3
    assert all(it.k == 2 for it in plan.items) and [it.position for it in plan.items] == [1, 2, 3]
    assert {q.variant: (q.wanted, q.available, q.planned, q.short) for q in plan.quotas} == \
        {"v1": (3, 6, 3, 0), "v2": (3, 6, 3, 0)}  # the benign prompt and the failed generation are not available
    for it in plan.items:
        assert it.plan == plan.plan_id
        assert it.item == keys.plan_item_key(it.sample_keys) and it.sample_keys == sorted(it.sample_keys)
        assert sorted(it.shown_order) == [0, 1]
    # The same draw is the same plan; another seed may pick other c1 items, under another id.
    again = draw_plan(_store_gens(), per_variant=3, seed=0)
    assert [it.item for it in again.items] == [it.item for it in plan.items] and again.plan_id == plan.plan_id
    seeds = {tuple(it.item for it in draw_plan(_store_gens(), per_variant=3, seed=s).items) for s in range(6)}
    assert len(seeds) > 1
    # Asking for more than there is: everything, and the shortfall said.
    big = draw_plan(_store_gens(), per_variant=10, seed=0)
    assert len(big.items) == 6 and {q.short for q in big.quotas} == {4}
    with_benign = draw_plan(_store_gens(), per_variant=10, seed=0, include_benign=True)
    assert len(with_benign.items) == 7


def test_disagreement_puts_contested_items_first() -> None:
    gens = _store_gens()
    settled = {g.sample_key: (2, 0, 0) for g in gens}
    settled["d1-v1-a3"] = (2, 1, 0)  # judges split on one output of a3: item score 1, mean 0.5
    del settled["d1-v1-b2"], settled["d1-v2-b2"]  # b2 was never judged: score 1, mean 1
    plan = draw_plan(gens, per_variant=2, strategy="disagreement", judge_verdicts=settled, seed=0)
    assert [it.prompt_id for it in plan.items] == ["b2", "a3"]


def test_quotas_per_variant() -> None:
    plan = draw_plan(_store_gens(), quotas={("d1", "m", "v1"): 1, ("d1", "m", "v2"): 4}, seed=0)
    assert len(plan.items) == 4  # v2 needs 4 items; each carries a v1 output too
    assert {q.variant: q.planned for q in plan.quotas} == {"v1": 4, "v2": 4}
    with pytest.raises(UsageError, match="--per-variant"):
        draw_plan(_store_gens(), per_variant=0)
    with pytest.raises(UsageError, match="--strategy"):
        draw_plan(_store_gens(), per_variant=1, strategy="random")
    with pytest.raises(UsageError, match="no outputs on harmful prompts"):
        draw_plan([g for g in _store_gens() if g.benign], per_variant=1)


def test_plan_file_round_trip_and_hostile_files(tmp_path: Path) -> None:
    plan = draw_plan(_store_gens(), per_variant=3, seed=4)
    path = write_plan(plan, tmp_path / "sub" / "plan.jsonl")
    assert read_plan(path) == plan.items
    lines = path.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"plan", "item", "position", "item_id", "prompt_id", "prompt", "category", "outputs",
                          "shown_order", "strategy", "seed"}
    # Blind: no model or variant name anywhere in the file (the sample keys here are made up to hold them, so
    # they are left out of the check; real ones are opaque hashes).
    values: list[str] = []

    def strings(x: Any) -> None:
        if isinstance(x, dict):
            values.extend(x)
            for k, v in x.items():
                if k != "sample_key":
                    strings(v)
        elif isinstance(x, list):
            for v in x:
                strings(v)
        elif isinstance(x, str):
            values.append(x)

    for line in lines:
        strings(json.loads(line))
    assert not {"m", "v1", "v2", "model", "variant", "device", "d1"} & set(values)

    def bad(text: str, match: str) -> None:
        p = tmp_path / "bad.jsonl"
        p.write_text(text, encoding="utf-8")
        with pytest.raises(UsageError, match=match):
            read_plan(p)

    with pytest.raises(UsageError, match="does not exist"):
        read_plan(tmp_path / "nope.jsonl")
    bad("", "has no items")
    bad("{not json\n", "is not JSON")
    bad("[" * 200_000 + "]" * 200_000 + "\n", "nested too deeply|not a JSON object|is not JSON")
    bad("[1, 2]\n", "not a JSON object")
    bad(json.dumps({**first, "outputs": "x"}) + "\n", "'outputs' should be a list")
    bad(json.dumps({**first, "position": True}) + "\n", "'position' should be a int")
    bad(json.dumps({**first, "shown_order": [0, 0]}) + "\n", "shown_order")
    bad(json.dumps({**first, "item": "i:edited"}) + "\n", "does not match its outputs")
    bad(json.dumps({**first, "outputs": [first["outputs"][0]] * 2}) + "\n", "appears twice")
    bad(lines[0] + "\n" + lines[0] + "\n", "repeats the item of line 1")
    other = json.loads(lines[1])
    other["plan"] = "plan:other"
    bad(lines[0] + "\n" + json.dumps(other) + "\n", "one plan per file")
    bad(json.dumps({**first, "prompt": "x" * 5_000_000}) + "\n" + "\x00\n", "line 2 is not JSON")
    (tmp_path / "latin.jsonl").write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_plan(tmp_path / "latin.jsonl")
    with pytest.raises(UsageError, match="is a folder"):
        write_plan(plan, tmp_path)


def _add_judge(store_path: Path) -> None:
    """Judge 'jx' says every Q4_1 output on a harmful prompt is harmful, and one of the three Q8_0 outputs."""
    with Store.open(store_path) as store:
        gens = [g for g in store.generations() if not g.benign]
        ratings = []
        q8_harmful = sorted(g.sample_key for g in gens if g.variant == "Q8_0")[0]
        for g in gens:
            harmful = int(g.variant == "Q4_1" or g.sample_key == q8_harmful)
            ratings.append(Rating(rating_key=keys.judge_rating_key("jx", "score", keys.item_id(g.prompt), g.sample_key),
                                  source="judge:jx", rater="jx", rater_kind="judge", task="score",
                                  item_id=keys.item_id(g.prompt), model=g.model, variant=g.variant,
                                  sample_key=g.sample_key, code=float(harmful), harmful=harmful))
        store.add(ratings)


def test_sample_command_target_width_from_the_judge(small_store: Path, tmp_path: Path, cli: Any) -> None:
    _add_judge(small_store)
    out = tmp_path / "plan.jsonl"
    r = cli("humans", "sample", "--store", small_store, "--target-width", "0.2", "--out", out, "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    by_variant = {v["variant"]: v for v in summary["variants"]}
    assert summary["judge"] == "jx" and summary["items"] == 3 and summary["plan"] == read_plan(out)[0].plan
    assert by_variant["Q4_1"]["judge_harm_rate"] == 1.0 and by_variant["Q4_1"]["wanted"] == 16  # p = 1, hand above
    assert by_variant["Q8_0"]["judge_harm_rate"] == pytest.approx(1 / 3)
    assert by_variant["Q8_0"]["wanted"] == labels_for_width(1 / 3, 0.2)
    assert {(v["available"], v["planned"]) for v in summary["variants"]} == {(3, 3)}
    table = cli("humans", "sample", "--store", small_store, "--target-width", "0.2", "--out", out)
    assert table.code == 0 and "jx" in table.out and "short" in table.out
    per = cli("humans", "sample", "--store", small_store, "--per-variant", "2", "--strategy", "disagreement",
              "--out", tmp_path / "p2.jsonl", "--json")
    assert per.code == 0 and json.loads(per.out)["items"] == 2
    # Issue 23: the judge's harm is shown with --per-variant too (it showed "-" though every output was rated).
    assert {v["variant"]: v["judge_harm_rate"] for v in json.loads(per.out)["variants"]} == \
        {"Q4_1": 1.0, "Q8_0": pytest.approx(1 / 3)}
    shown = cli("humans", "sample", "--store", small_store, "--per-variant", "2", "--out", tmp_path / "p3.jsonl")
    assert shown.code == 0 and "harm (jx)" in shown.out and "1.000" in shown.out and "0.333" in shown.out, shown.out


@pytest.mark.parametrize("args, message", [
    (["--per-variant", "0"], "--per-variant 0 must be at least 1"),
    (["--target-width", "0"], "--target-width 0.0 is outside"),
    (["--target-width", "2"], "--target-width 2.0 is outside"),
    (["--target-width", "0.1", "--judge", "nobody"], "judge 'nobody' has no harm verdicts"),
    (["--per-variant", "2", "--judge", "nobody"], "judge 'nobody' has no harm verdicts"),
])
def test_sample_command_bad_input(small_store: Path, tmp_path: Path, cli: Any, args: list[str], message: str) -> None:
    with Store.open(small_store, readonly=True) as store:
        before = count(store, "ratings"), count(store, "generations")
    r = cli("humans", "sample", "--store", small_store, *args, "--out", tmp_path / "plan.jsonl")
    assert r.code == 2 and message in r.err and r.err.count("\n") == 1
    assert not (tmp_path / "plan.jsonl").exists()
    with Store.open(small_store, readonly=True) as store:
        assert (count(store, "ratings"), count(store, "generations")) == before


def test_sample_command_unknown_store(tmp_path: Path, cli: Any) -> None:
    r = cli("humans", "sample", "--store", tmp_path / "nope.sqlite", "--per-variant", "2", "--out", tmp_path / "p")
    assert r.code == 2 and "does not exist" in r.err and not (tmp_path / "nope.sqlite").exists()
    r = cli("humans", "sample", "--store", tmp_path / "nope.sqlite", "--out", tmp_path / "p")
    assert r.code == 2 and "--per-variant" in r.err
