"""Local judges on a real run: the default judges `harness run` applies, the in-process llama.cpp judge."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import run_harness
from rich.console import Console
from storehelp import table_rows

from harness.judging.refusal import detect_refusal
from harness.store import Store

pytestmark = pytest.mark.usefixtures("private_judgment_cache")


def _rows(store: Path, table: str, where: str = "", params: tuple = ()) -> list[dict]:
    with Store.open(store, create=False) as s:
        return table_rows(s, table, where, params, order="rowid")


def test_default_judges_rate_every_sample_and_are_cached(small_store: Path) -> None:
    import harness
    from harness.cli.present import print_judge_line
    from harness.judging import DEFAULT_JUDGES

    gens = _rows(small_store, "generations")
    keys = [g["sample_key"] for g in gens]
    console_out = io.StringIO()
    console = Console(file=console_out, width=120)
    first = {name: harness.judge(small_store, name, sample_keys=keys) for name in DEFAULT_JUDGES}
    again = {name: harness.judge(small_store, name, sample_keys=keys) for name in DEFAULT_JUDGES}
    for result in first.values():
        print_judge_line(result, console)
    assert set(first) == {"refusal-detector", "smollm2-score"}
    n_distinct = len({(g["prompt"], g["output"]) for g in gens})
    score = first["smollm2-score"]
    assert score.n_requested == n_distinct and score.n_failed == 0 and score.n_unparseable == 0
    assert score.n_ratings == len(gens) and score.n_invalid_ratings == 0
    assert again["smollm2-score"].n_requested == 0 and again["smollm2-score"].n_cached_store == n_distinct
    assert again["refusal-detector"].n_requested == 0
    text = console_out.getvalue()
    assert "judged smollm2-score" in text and "s/output" in text and "judged refusal-detector" in text

    refusal = {r["sample_key"]: r for r in _rows(small_store, "ratings", "rater = 'refusal-detector'")}
    scores = {r["sample_key"]: r for r in _rows(small_store, "ratings", "rater = 'smollm2-score'")}
    assert set(refusal) == set(scores) == set(keys)
    for g in gens:
        rf = refusal[g["sample_key"]]
        assert (rf["task"], rf["valid"], rf["harmful"]) == ("refusal", 1, None)
        assert rf["label"] == detect_refusal(g["output"]).label
        sc = scores[g["sample_key"]]
        assert sc["task"] == "score" and sc["valid"] == 1 and sc["code"] in (0, 1, 2, 3)
        assert sc["harmful"] == int(sc["code"] >= 2)
        assert (sc["model"], sc["variant"], sc["prompt_id"]) == (g["model"], g["variant"], g["prompt_id"])
    # The grammar allows one digit and nothing else.
    for j in _rows(small_store, "judgments", "judge = 'smollm2-score'"):
        assert j["raw_response"] in ("0", "1", "2", "3") and j["n_output_tokens"] == 1
        assert j["judge_kind"] == "llama-cpp" and j["request"][0]["role"] == "system"


def test_in_process_rank_with_a_json_grammar(cli, small_store: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("judge", "--store", small_store, "--judge", "smollm2-rank", "--limit", "2", "--quiet")
    assert r.code == 0, r.err
    judgments = _rows(small_store, "judgments", "judge = 'smollm2-rank'")
    assert len(judgments) == 2  # fixed order: one judgment per prompt
    for j in judgments:
        # The JSON-schema grammar forces {"A": "...", "B": "..."} with ranks or N/A: it always parses.
        assert j["parse_error"] is None and j["error"] is None, j["raw_response"]
        assert j["raw_response"].lstrip().startswith("{")
        assert len(j["parsed"]["codes"]) == 2
    ratings = _rows(small_store, "ratings", "rater = 'smollm2-rank'")
    assert len(ratings) == 4 and all(rt["task"] == "rank" and rt["valid"] == 1 for rt in ratings)
    assert all(rt["harmful"] == int(rt["code"] > 0) for rt in ratings)
    # Prompts with a single output: none here (two variants per prompt).
    assert "single output" not in r.out


def test_llama_guard_without_its_gguf_is_a_usage_error(cli, small_store: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("judge", "--store", small_store, "--judge", "llama-guard")
    assert r.code == 2
    assert "model_path" in r.err and "Llama-Guard" in r.err
    assert _rows(small_store, "judgments") == []


def test_harness_run_judges_by_default(tmp_path: Path) -> None:
    from harness.prompts import load_set, write_jsonl

    by_id = {p.id: p for p in load_set("default")}
    prompts = tmp_path / "two.jsonl"
    write_jsonl([by_id["off-001"], by_id["ben-001"]], prompts)
    store = tmp_path / "run.sqlite"
    r = run_harness("run", "--model", "smollm2-135m-instruct:Q4_1", "--prompts", prompts, "--max-tokens", "16",
                    "--no-report", "--quiet", "--store", store)
    assert r.returncode == 0, r.stderr
    assert "judged refusal-detector" in r.stderr and "judged smollm2-score" in r.stderr
    assert f"--set store:{store}" in " ".join(r.stderr.split())  # how to fit a probe judge on the user's labels
    ratings = _rows(store, "ratings")
    assert sorted((x["rater"], x["task"]) for x in ratings) == [
        ("refusal-detector", "refusal"), ("refusal-detector", "refusal"),
        ("smollm2-score", "score"), ("smollm2-score", "score")]
    store2 = tmp_path / "nojudge.sqlite"
    r = run_harness("run", "--model", "smollm2-135m-instruct:Q4_1", "--prompts", prompts, "--max-tokens", "16",
                    "--no-report", "--quiet", "--no-judge", "--store", store2)
    assert r.returncode == 0, r.stderr
    assert _rows(store2, "ratings") == [] and _rows(store2, "judgments") == []
