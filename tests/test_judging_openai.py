"""The OpenAI-compatible judge against a real llama.cpp server on 127.0.0.1 running the embedded model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from storehelp import table_rows

from harness.judging.local_server import LocalServer, start_llama_server
from harness.store import Store

N_OUTPUTS = 10  # the small run: 5 prompts x 2 variants

pytestmark = pytest.mark.usefixtures("private_judgment_cache")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    from harness.variants import load_manifest, resolve_variant

    model = resolve_variant(load_manifest("smollm2-135m-instruct"), "Q4_1").path
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    server = start_llama_server(model, n_ctx=2048, n_threads=2, log_path=log)
    try:
        yield server
    finally:
        pid = server.pid
        server.stop()
        assert server.process.poll() is not None, f"llama server {pid} still running"


def chat_requests(server: LocalServer) -> int:
    """Requests the server has answered (its access log)."""
    return server.log_path.read_text(errors="replace").count("POST /v1/chat/completions")


def _rows(store: Path, table: str, where: str = "", params: tuple = ()) -> list[dict]:
    with Store.open(store, create=False) as s:
        return table_rows(s, table, where, params, order="rowid")


def test_score_judge_on_a_real_server_then_zero_requests(cli, small_store: Path, llama_server: LocalServer) -> None:  # type: ignore[no-untyped-def]
    before = chat_requests(llama_server)
    args = ("judge", "--store", small_store, "--judge", "local-openai", "--base-url", llama_server.base_url,
            "--concurrency", "2", "--quiet")
    r = cli(*args)
    assert r.code == 0, r.err
    gens = {g["sample_key"]: g for g in _rows(small_store, "generations")}
    assert len(gens) == N_OUTPUTS
    # Two variants often write the same text for a prompt: identical inputs are one judgment, one request.
    n_distinct = len({(g["prompt"], g["output"]) for g in gens.values()})
    assert chat_requests(llama_server) - before == n_distinct
    judgments = _rows(small_store, "judgments")
    assert len(judgments) == n_distinct
    for j in judgments:
        # {"type": "json_object", "schema": ...} constrains the answer to {"score": n}: every answer parses.
        assert j["error"] is None and j["parse_error"] is None, j
        assert 0 <= j["parsed"]["score"] <= 3
        assert j["judge"] == "local-openai" and j["judge_kind"] == "openai" and j["mode"] == "score"
        assert j["n_input_tokens"] > 100 and j["n_output_tokens"] >= 3 and j["latency_s"] > 0 and j["attempts"] == 1
        assert j["cost_usd"] is None  # no prices for a local endpoint
        assert len(j["rubric_version"]) == 12 and j["rubric"] == "rubrics/harm-score.j2"
        g = gens[j["sample_keys"][0]]
        user = j["request"][-1]["content"]
        assert g["prompt"] in user and g["output"].strip() in user
    ratings = _rows(small_store, "ratings", "rater = ?", ("local-openai",))
    assert len(ratings) == N_OUTPUTS
    by_key = {j["judgment_key"]: j for j in judgments}
    for rt in ratings:
        score = by_key[rt["judgment_key"]]["parsed"]["score"]
        assert rt["code"] == score and rt["harmful"] == int(score >= 2) and rt["valid"] == 1
        assert (rt["model"], rt["variant"]) == (gens[rt["sample_key"]]["model"], gens[rt["sample_key"]]["variant"])
    # The same command again: no request reaches the server, nothing is added.
    count = chat_requests(llama_server)
    r = cli(*args)
    assert r.code == 0 and "0 requested" in r.out
    assert chat_requests(llama_server) == count
    assert len(_rows(small_store, "judgments")) == n_distinct
    assert len(_rows(small_store, "ratings", "rater = ?", ("local-openai",))) == N_OUTPUTS


def test_rank_and_pairwise_on_a_real_server(cli, small_store: Path, llama_server: LocalServer) -> None:  # type: ignore[no-untyped-def]
    before = chat_requests(llama_server)
    r = cli("judge", "--store", small_store, "--judge", "local-openai", "--base-url", llama_server.base_url,
            "--mode", "rank", "--order", "balanced", "--limit", "2", "--quiet")
    assert r.code == 0, r.err
    rank = _rows(small_store, "judgments", "mode = 'rank'")
    # 2 prompts x 2 rotations of their 2 outputs (Q4_1, Q8_0); when both variants wrote the same text the
    # two rotations show the same thing and are one judgment.
    groups: dict[str, list[str]] = {}
    for g in _rows(small_store, "generations"):
        groups.setdefault(g["prompt"], []).append(g["output"])
    first_two = [groups[p] for p in sorted(groups)[:2]]
    expected = sum(1 if outs[0] == outs[1] else 2 for outs in first_two)
    assert len(rank) == expected
    assert chat_requests(llama_server) - before == expected
    for j in rank:
        assert j["parse_error"] is None and j["error"] is None, j
        assert len(j["parsed"]["codes"]) == 2 and all(0 <= c <= 2 for c in j["parsed"]["codes"])
        assert "Content A" in j["request"][-1]["content"] and "Content B" in j["request"][-1]["content"]
        # Mapped back: the canonical codes are the shown codes permuted by the shown order.
        assert [j["parsed"]["codes"][i] for i in j["shown_order"]] == j["parsed"]["shown_codes"]
    ratings = _rows(small_store, "ratings", "task = 'rank'")
    assert len(ratings) == 4 and all(rt["valid"] == 1 and rt["extra"]["orders"] == 2 for rt in ratings)

    r = cli("judge", "--store", small_store, "--judge", "local-openai", "--base-url", llama_server.base_url,
            "--mode", "pairwise", "--limit", "1", "--quiet")
    assert r.code == 0, r.err
    (pair,) = _rows(small_store, "judgments", "mode = 'pairwise'")
    assert pair["parse_error"] is None and pair["parsed"]["answer"] in ("A", "B", "tie")
    assert len(_rows(small_store, "ratings", "task = 'pairwise'")) == 2


def test_score_probabilities_from_server_logprobs(cli, small_store: Path, llama_server: LocalServer,  # type: ignore[no-untyped-def]
                                                  tmp_path: Path) -> None:
    from harness.catalog import find

    toml = tmp_path / "local-logprobs.toml"
    toml.write_text(find("judges", "local-openai").read_text().replace('mode = "score"', 'mode = "score"\nlogprobs = true'))
    r = cli("judge", "--store", small_store, "--judge", toml, "--base-url", llama_server.base_url, "--limit", "3",
            "--quiet")
    assert r.code == 0, r.err
    judgments = _rows(small_store, "judgments", "judge = 'local-logprobs'")
    assert len(judgments) == 3
    with_probs = [j for j in judgments if "score_probs" in (j["parsed"] or {})]
    assert with_probs, "the server returned no score token among its top logprobs"
    for j in with_probs:
        probs = j["parsed"]["score_probs"]
        assert set(probs) == {"0", "1", "2", "3"} and sum(probs.values()) == pytest.approx(1.0)
    rt = _rows(small_store, "ratings", "rater = 'local-logprobs' AND sample_key = ?",
               (with_probs[0]["sample_keys"][0],))
    assert rt[0]["extra"]["score_probs"] == with_probs[0]["parsed"]["score_probs"]
