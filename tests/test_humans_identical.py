"""Issue 23: byte-identical outputs of several variants are one content wherever people label (the page, the CSV
sheet, Label Studio), the answer on it is stored for each output, and equally harmful outputs may share a rank."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from storehelp import add_rows, table_rows
from test_humans_labelstudio import annotation, choice, ls_export, ranker

from harness import keys
from harness.annotate import page
from harness.annotate.session import Labelling
from harness.humans.labelstudio import parse_export, tasks_for
from harness.humans.plan import PlanItem, whole_store_plan
from harness.humans.sheets import parse_sheet, write_sheet
from harness.store import Store

SAME = "Same words from two variants"
PROMPT = "A prompt both variants answered alike"


def _store_with_identical(path: Path) -> list[str]:
    """Adds one harmful prompt whose Q4_1 and Q8_0 outputs are byte-identical; returns their sample keys."""
    with Store.open(path) as store:
        gens = table_rows(store, "generations", order="variant, prompt_id")
        rows, made = [], []
        for variant in ("Q4_1", "Q8_0"):
            base = next(g for g in gens if g["variant"] == variant and not g["benign"])
            sk = keys.text_sha256(f"dup-{variant}")[:32]
            rows.append({**base, "sample_key": sk, "prompt_id": "dup-001", "prompt": PROMPT, "output": SAME,
                         "prompt_sha256": keys.text_sha256(PROMPT), "category": "dup", "run_id": "test:dup"})
            made.append(sk)
        add_rows(store, "generations", rows)
    return made


def _items(path: Path) -> tuple[PlanItem, PlanItem]:
    """The plan item with identical outputs, and one with two different outputs."""
    with Store.open(path, readonly=True) as store:
        plan = whole_store_plan(store.generations())
    dup = next(it for it in plan.items if it.prompt == PROMPT)
    other = next(it for it in plan.items if it.k == 2 and it.n_contents == 2)
    return dup, other


def test_the_page_shows_identical_outputs_once_and_stores_the_answer_for_each(small_store: Path) -> None:
    made = _store_with_identical(small_store)
    dup, other = _items(small_store)
    assert (dup.k, dup.n_contents) == (2, 1)
    with Store.open(small_store) as store:
        lab = Labelling(store, [dup, other], "rank")
        shown = lab.serve("alice", dup)
        contents = dup.contents(shown)
        html = page.item_page(item=dup, texts=[dup.outputs[g[0]].output for g in contents], task="rank", csrf="c",
                              nonce="n", annotator="alice", progress=lab.progress("alice"),
                              copies=[len(g) for g in contents])
        assert html.count(SAME) == 1 and "2 variants wrote exactly this" in html and 'name="B"' not in html
        ratings = lab.answer("alice", dup, ["1"])
        assert sorted(r.sample_key for r in ratings) == sorted(made)
        assert {(r.code, (r.extra or {})["shown_as"], (r.extra or {})["identical_outputs"]) for r in ratings} == \
            {(1.0, "A", 2)}
        assert dup.item in lab.labelled("alice")
        # A tie between two different outputs is an answer (both equally harmful).
        tied = lab.answer("alice", other, ["1", "1"])
        assert [r.code for r in tied] == [1.0, 1.0]
        assert lab.undo("alice") == other and lab.prefill("alice", other) == [1, 1]


def test_the_csv_sheet_has_one_column_per_content_and_takes_ties(small_store: Path, tmp_path: Path) -> None:
    made = _store_with_identical(small_store)
    dup, other = _items(small_store)
    (path,) = write_sheet([dup, other], "rank", tmp_path / "sheet")
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["content_a"] == SAME and rows[0]["content_b"] == ""  # shown once
    assert rows[0]["sample_keys"].split() == [dup.outputs[i].sample_key for i in dup.shown_order]  # both kept
    rows[0].update(annotator="bob", ranking="1")
    rows[1].update(annotator="bob", ranking="1,1")  # a tie
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with Store.open(small_store, readonly=True) as store:
        _, ratings, _ = parse_sheet(path, store=store)
    codes = {r.sample_key: r.code for r in ratings}
    assert codes == {made[0]: 1.0, made[1]: 1.0, **{o.sample_key: 1.0 for o in other.outputs}}


def test_label_studio_tasks_show_identical_outputs_once(small_store: Path, tmp_path: Path) -> None:
    made = _store_with_identical(small_store)
    dup, _ = _items(small_store)
    (rank_task,) = tasks_for([dup], "rank")
    assert [o["body"] for o in rank_task["data"]["outputs"]] == [SAME]
    assert sorted(rank_task["data"]["harness"]["sample_keys"]) == sorted(made)
    assert len(tasks_for([dup], "label")) == 1  # one task per content
    export = tmp_path / "export.json"
    export.write_text(json.dumps(ls_export([rank_task], {1: [annotation(5, 9, ranker(["A"], []))]})),
                      encoding="utf-8")
    with Store.open(small_store, readonly=True) as store:
        _, ratings, _ = parse_export(export, store=store)
        (label_task,) = tasks_for([dup], "label")
        export.write_text(json.dumps(ls_export([label_task], {1: [annotation(6, 9, choice("Harmful"))]})), encoding="utf-8")
        _, labels, _ = parse_export(export, store=store)
    assert {r.sample_key: r.code for r in ratings} == {made[0]: 1.0, made[1]: 1.0}
    assert {r.sample_key: r.harmful for r in labels} == {made[0]: 1, made[1]: 1}

