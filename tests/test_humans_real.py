"""Importers on the real format samples in ../shared/data (skipped cleanly when absent).

Expected values are computed here independently from the files with the csv / json modules.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from conftest import shared_data
from storehelp import count, query, table_rows

from harness.humans import import_path
from harness.keys import item_id as item_id_for_prompt
from harness.store import Store

MODEL_COLS = ["Model 1 - Mistral-7B", "Model 2 - MPT-7B", "Model 3 - StableLM-alpha-7B"]


def read_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))


def test_llm_harm_sample(tmp_path: Path) -> None:
    release = shared_data("llm-harm-sample")
    groups = sorted((release / "raw_submissions").glob("*Group*.csv"))
    expected_human = 0
    brackets = 0
    for g in groups:
        for row in read_rows(g):
            if row["Prompt"].strip() and all(row[c].strip() for c in MODEL_COLS):
                expected_human += 3
                brackets += "[" in row["Ranking"]
    expert_rows = read_rows(release / "raw_submissions" / "expert_annotations.csv")
    with Store.open(tmp_path / "s.sqlite") as store:
        report = import_path(store, "llm-harm", release, reverse_groups={10})
        assert count(store, "ratings", "rater = 'human'") == expected_human
        assert count(store, "ratings", "rater = 'expert'") == 3 * len(expert_rows)
        assert count(store, "ratings", "rater = 'human' AND valid = 0") == 0  # every messy string was read
        assert report.repaired["brackets removed"] == brackets
        assert store.count("generations") == expected_human  # one generation per rated response
        annotators = {r["annotator"] for r in table_rows(store, "ratings", "rater = 'human'")}
        assert annotators == {"group-1", "group-10", "group-15"}
        # '[N/A, 3, N/A]' of group 15 becomes 0,1,0 (dense renumbering)
        g15 = read_rows(release / "raw_submissions" / "Output_Group_15.csv")
        row = next(r for r in g15 if r["Ranking"].strip() == "[N/A, 3, N/A]")
        codes = {r["model"]: r["code"] for r in table_rows(store,
            "ratings", "rater = 'human' AND item_id = ?", [item_id_for_prompt(row["Prompt"])])}
        assert codes == {"mistral-7b": 0, "mpt-7b": 1, "stablelm-alpha-7b": 0}
        # group 10 uses 1 = most harmful: '2,1,N/A' means MPT (1) is the most harmful
        g10 = read_rows(release / "raw_submissions" / "output_Group_10.csv")
        row = next(r for r in g10 if r["Ranking"].strip() == "2,1,N/A" and all(r[c].strip() for c in MODEL_COLS))
        codes = {r["model"]: r["code"] for r in table_rows(store,
            "ratings", "rater = 'human' AND item_id = ?", [item_id_for_prompt(row["Prompt"])])}
        assert codes == {"mistral-7b": 1, "mpt-7b": 2, "stablelm-alpha-7b": 0}
        # judges: every prediction row is either written (3 ratings) or rejected with its row number
        for judge in ("gpt4o", "sonnet", "llama"):
            n_rows = len(read_rows(release / f"{judge}_predictions.csv"))
            rejected = [r for r in report.rejected if r.file == f"{judge}_predictions.csv"]
            assert count(store, "ratings", "rater = ?", [judge]) == 3 * (n_rows - len(rejected))
        again = import_path(store, "llm-harm", release, reverse_groups={10})
        assert again.ratings_written == 0 and again.generations_written == 0


def test_llm_harm_latin1_copy_reads_the_same(tmp_path: Path) -> None:
    """The full release mixes encodings: a Latin-1 copy of a group file gives the same ratings."""
    src = shared_data("llm-harm-sample", "raw_submissions", "output_Group_1.csv")
    text = src.read_bytes().decode("utf-8-sig")
    latin = tmp_path / "latin" / "output_Group_1.csv"
    latin.parent.mkdir()
    latin.write_bytes(text.encode("latin-1", errors="replace"))
    with Store.open(tmp_path / "a.sqlite") as a, Store.open(tmp_path / "b.sqlite") as b:
        ra = import_path(a, "llm-harm", src)
        rb = import_path(b, "llm-harm", latin)
        assert rb.repaired["file decoded as cp1252 (not UTF-8)"] == 1 and "file decoded" not in str(ra.repaired)
        key = "SELECT item_id, model, code FROM ratings ORDER BY 1, 2"
        assert query(a, key) == query(b, key) and len(query(a, key)) == ra.ratings_written


def test_jbb_labels_sample(tmp_path: Path) -> None:
    path = shared_data("jbb-judge-comparison-sample.csv")
    rows = read_rows(path)
    label_cols = ["human1", "human2", "human3", "human_majority", "harmbench_cf", "gpt4_cf", "llamaguard2_cf",
                  "llama3_cf"]
    with Store.open(tmp_path / "s.sqlite") as store:
        report = import_path(store, "labels-csv", path)
        assert report.ratings_written == len(rows) * len(label_cols) and not report.rejected
        for col in label_cols:
            if col.startswith("human") and col != "human_majority":
                where, params = "rater = 'human' AND annotator = ?", [col]
            else:
                where, params = "rater = ?", ["human-majority" if col == "human_majority" else col[:-3]]
            harmful = sum(r["harmful"] for r in table_rows(store, "ratings", where, params))
            assert harmful == sum(int(r[col]) for r in rows), col
        assert store.count("generations") == len({(r["prompt"], r["target_response"]) for r in rows})


def test_xstest_refusal_sample(tmp_path: Path) -> None:
    folder = shared_data("xstest-sample")
    with Store.open(tmp_path / "s.sqlite") as store:
        for path in sorted(folder.glob("*.csv")):
            rows = read_rows(path)
            model = path.stem.rsplit("completions_", 1)[1]
            report = import_path(store, "labels-csv", path)
            assert report.ratings_written == 3 * len(rows)
            for col, rater, annotator in (("annotation_1", "human", "annotation_1"),
                                          ("annotation_2", "human", "annotation_2"), ("final_label", "human-final", None)):
                got = table_rows(store, "ratings", "model = ? AND rater = ? AND annotator IS ?", [model, rater, annotator])
                assert sum(r["label"] == "refusal" for r in got) == sum(r[col] == "2_full_refusal" for r in rows)
                assert sum(r["label"] == "partial_refusal" for r in got) == sum(r[col] == "3_partial_refusal" for r in rows)
                unsafe_compliance = sum(r[col] == "1_full_compliance" and r["type"].startswith("contrast_") for r in rows)
                assert sum(r["harmful"] for r in got) == unsafe_compliance
        # both models answered the same prompts: items are shared, outputs differ by model
        assert query(store, "SELECT COUNT(DISTINCT item_id) n FROM ratings")[0]["n"] == len(
            {item_id_for_prompt(r["prompt"]) for r in read_rows(sorted(folder.glob("*.csv"))[0])})


def test_hh_pairwise_sample(tmp_path: Path) -> None:
    path = shared_data("hh-harmless-base-sample.jsonl")
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    accepted = 0
    for obj in lines:
        # independent split: both dialogues up to their own last assistant turn must be equal
        cut_c = obj["chosen"].rfind("\n\nAssistant:") + len("\n\nAssistant:")
        cut_r = obj["rejected"].rfind("\n\nAssistant:") + len("\n\nAssistant:")
        reply_c, reply_r = obj["chosen"][cut_c:].strip(), obj["rejected"][cut_r:].strip()
        if obj["chosen"][:cut_c] == obj["rejected"][:cut_r] and reply_c and reply_r and reply_c != reply_r:
            accepted += 1
    with Store.open(tmp_path / "s.sqlite") as store:
        report = import_path(store, "pairwise-jsonl", path)
        assert report.rows_read == len(lines)
        assert report.ratings_written == 2 * accepted
        assert len(report.rejected) == len(lines) - accepted
        per_item = query(store, "SELECT item_id, SUM(code) s, COUNT(*) n FROM ratings GROUP BY item_id")
        assert all(r["s"] == 1 and r["n"] == 2 for r in per_item)  # exactly one 'rejected' reply per pair
