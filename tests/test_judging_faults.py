"""The OpenAI-compatible judge against a misbehaving local server: retries, failures, cache, concurrency, secrets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_harness
from faulthelp import JUDGE_TOML, KEY_ENV, fault_server, synthetic
from storehelp import table_rows

SECRET = "sk-test-SECRET123"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(KEY_ENV, "sk-test-not-the-secret")


def _rows(store: Path, table: str) -> list[dict]:
    from harness.store import Store

    with Store.open(store, create=False) as s:
        return table_rows(s, table, order="rowid")


FAULT_OUTPUTS = {
    "429": "Reply one [[fault:429x2]]",  # 2 x 429, then an answer: 3 attempts
    "500": "Reply two [[fault:500x1]]",  # 1 x 500, then an answer: 2 attempts
    "500always": "Reply three [[fault:500always]]",  # 4 attempts (max_retries 3), then recorded as failed
    "malformed": "Reply four [[fault:malformed]]",  # body is not JSON: 4 attempts, failed
    "empty": "Reply five [[fault:empty]]",  # empty choice list: 4 attempts, failed
    "slow": "Reply six [[fault:slowx1]]",  # first attempt times out (1 s), second answers: 2 attempts
    "prose": "Reply seven [[answer:I think it is rather harmful.]]",  # unparseable answer
    "score3": "Reply eight [[answer:Score: 3\\nIt gives instructions.]]",
    "score0": 'Reply nine [[answer:{"score": 0}]]',
    "plain": "Reply ten",  # default answer {"score": 2}
}


def test_faults_are_retried_recorded_and_nothing_is_lost(cli, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "faults.sqlite"
    keys = synthetic.write_store(store, [(f"Prompt {name}?", "m", out) for name, out in FAULT_OUTPUTS.items()])
    r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet")
    assert r.code == 0, r.err
    assert "3 failed" in r.out and "1 unparseable" in r.out
    by_key = {j["sample_keys"][0]: j for j in _rows(store, "judgments")}
    assert set(by_key) == set(keys)  # every output has a judgment: nothing lost
    j = {name: by_key[k] for name, k in zip(FAULT_OUTPUTS, keys)}
    expected_attempts = {"429": 3, "500": 2, "500always": 4, "malformed": 4, "empty": 4, "slow": 2,
                         "prose": 1, "score3": 1, "score0": 1, "plain": 1}
    assert {n: j[n]["attempts"] for n in FAULT_OUTPUTS} == expected_attempts
    for name in ("500always", "malformed", "empty"):
        assert j[name]["error"] and j[name]["raw_response"] is None and j[name]["parsed"] is None
    assert "500" in j["500always"]["error"] and "the answer is not JSON" in j["malformed"]["error"]
    assert "empty choice list" in j["empty"]["error"]
    assert j["prose"]["error"] is None and j["prose"]["parse_error"] and j["prose"]["parsed"] is None
    assert j["prose"]["raw_response"] == "I think it is rather harmful."
    assert j["score3"]["parsed"] == {"score": 3} and j["plain"]["parsed"] == {"score": 2}
    assert j["slow"]["latency_s"] >= 1.0  # the timed-out first attempt is part of the judgment's time
    # The server saw exactly the attempts we recorded.
    per_output = {name: sum(1 for q in server.requests if out in q["body"]["messages"][-1]["content"])
                  for name, out in FAULT_OUTPUTS.items()}
    assert per_output == expected_attempts
    # Ratings: failed and unparseable are invalid (harmful NULL), never harmless.
    ratings = {r["sample_key"]: r for r in _rows(store, "ratings")}
    assert len(ratings) == 10
    rt = {name: ratings[k] for name, k in zip(FAULT_OUTPUTS, keys)}
    for name in ("500always", "malformed", "empty", "prose"):
        assert rt[name]["valid"] == 0 and rt[name]["harmful"] is None and rt[name]["error"]
    assert (rt["score3"]["harmful"], rt["score0"]["harmful"], rt["plain"]["harmful"]) == (1, 0, 1)
    assert (rt["429"]["code"], rt["slow"]["valid"]) == (2, 1)
    # The summary table counts the 4 invalid ratings and excludes them from the rate: 6 valid, 5 harmful.
    assert "83%" in r.out


MALFORMED = {
    "choicesstr": "no choice list (choices: str)",
    "choicesnull": "first choice has no message",
    "choicesobj": "no choice list (choices: dict)",
    "contentnum": "message content is not text (int)",
    "huge": "more than the",  # Content-Length over the bound: refused before reading
    "hugechunked": "larger than",  # no length: cut off while streaming in
}


def test_malformed_and_oversized_bodies_are_recorded_errors(cli, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A 200 whose choices are a string, [null] or an object, content that is not text, and 5 MB answers: each
    becomes a failed judgment with its reason (oversized ones are not retried), and the store stays small."""
    store = tmp_path / "malformed.sqlite"
    keys = synthetic.write_store(store, [(f"Prompt {k}?", "m", f"Reply [[fault:{k}]]") for k in MALFORMED]
                                 + [("Prompt fine?", "m", "A fine reply")])
    r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet")
    assert r.code == 0, r.err  # one judgment succeeded: not every request failed
    assert f"{len(MALFORMED)} failed" in r.out
    by_key = {j["sample_keys"][0]: j for j in _rows(store, "judgments")}
    for (kind, reason), key in zip(MALFORMED.items(), keys):
        j = by_key[key]
        assert j["error"] and reason in j["error"] and j["parsed"] is None and j["raw_response"] is None, (kind, j)
        assert j["attempts"] == (1 if kind.startswith("huge") else 4), (kind, j["attempts"])
    assert by_key[keys[-1]]["parsed"] == {"score": 2}
    assert store.stat().st_size < 1_000_000  # 10 MB of answers were never stored


def test_failed_judgments_are_retried_by_the_next_run(cli, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "retry.sqlite"
    synthetic.write_store(store, [("P1?", "m", "ok [[answer:Score: 1]]"), ("P2?", "m", "bad [[fault:500x4]]")])
    assert cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet").code == 0
    assert server.count == 1 + 4
    failed = [j for j in _rows(store, "judgments") if j["error"]]
    assert len(failed) == 1
    # Second run: only the failed one is asked again (its 5th request succeeds); the good one is cached.
    r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet")
    assert r.code == 0
    assert server.count == 5 + 1
    judgments = _rows(store, "judgments")
    assert len(judgments) == 2 and not any(j["error"] for j in judgments)
    assert sorted(r["valid"] for r in _rows(store, "ratings")) == [1, 1]


def test_second_identical_run_makes_zero_requests_and_the_disk_cache_serves_other_stores(
        cli, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    outputs = [(f"Question {i}?", m, f"answer {i} from {m}") for i in range(3) for m in ("m1", "m2")]
    store = tmp_path / "a.sqlite"
    synthetic.write_store(store, outputs)
    args = ("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet")
    assert cli(*args).code == 0
    assert server.count == 6
    n_ratings = len(_rows(store, "ratings"))
    r = cli(*args)
    assert r.code == 0 and "0 requested, 6 already in the store" in r.out
    assert server.count == 6  # zero new requests
    assert len(_rows(store, "ratings")) == n_ratings == 6  # re-judging adds nothing
    # A different store with the same outputs: answers come from the on-disk cache.
    other = tmp_path / "b.sqlite"
    synthetic.write_store(other, outputs)
    r = cli("judge", "--store", other, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet")
    assert r.code == 0 and "6 from the disk cache" in r.out
    assert server.count == 6
    assert [j["attempts"] for j in _rows(other, "judgments")] == [0] * 6
    # Without the disk cache it asks again.
    third = tmp_path / "c.sqlite"
    synthetic.write_store(third, outputs)
    assert cli("judge", "--store", third, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet",
               "--no-disk-cache").code == 0
    assert server.count == 12


def test_identical_inputs_are_one_request_but_each_output_is_rated(cli, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "dup.sqlite"
    # Two variants wrote the same text for the same prompt; a third wrote something else.
    keys = synthetic.write_store(store, [("Same?", "m1", "same words"), ("Same?", "m2", "same words"),
                                         ("Same?", "m3", "other words [[answer:Score: 0]]")])
    assert cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet").code == 0
    assert server.count == 2
    assert len(_rows(store, "judgments")) == 2
    ratings = {r["sample_key"]: r for r in _rows(store, "ratings")}
    assert set(ratings) == set(keys)
    assert (ratings[keys[0]]["judgment_key"] == ratings[keys[1]]["judgment_key"]
            != ratings[keys[2]]["judgment_key"])
    assert [ratings[k]["code"] for k in keys] == [2, 2, 0]
    assert [ratings[k]["model"] for k in keys] == ["m1", "m2", "m3"]


def test_requests_run_concurrently_up_to_the_limit(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "conc.sqlite"
    synthetic.write_store(store, [(f"Q{i}?", "m", f"output {i}") for i in range(8)])
    with fault_server.FaultServer(delay_s=0.3) as s:
        r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", s.base_url, "--concurrency", "3",
                "--quiet")
        assert r.code == 0
        assert s.count == 8
        assert s.max_in_flight == 3  # never more than the limit, and the limit was used
    with fault_server.FaultServer(delay_s=0.1) as s:
        store2 = tmp_path / "seq.sqlite"
        synthetic.write_store(store2, [(f"Q{i}?", "m", f"output {i}") for i in range(4)])
        assert cli("judge", "--store", store2, "--judge", JUDGE_TOML, "--base-url", s.base_url, "--concurrency",
                   "1", "--quiet").code == 0
        assert s.max_in_flight == 1


def test_rank_through_the_endpoint_maps_the_shown_order_back(cli, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "rank.sqlite"
    # Two prompts, two models each. Whatever is shown as Content A is ranked 2 (of one harmful), B is N/A.
    answer = "[[answer:Content A: 2\\nContent B: N/A\\n\\nContent A is worse.]]"
    keys = synthetic.write_store(store, [("Rank me one?", "m1", f"one-m1 {answer}"), ("Rank me one?", "m2", "one-m2"),
                                         ("Rank me two?", "m1", "two-m1"), ("Rank me two?", "m2", f"two-m2 {answer}")])
    r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--mode", "rank",
            "--order", "balanced", "--quiet")
    assert r.code == 0, r.err
    judgments = _rows(store, "judgments")
    assert len(judgments) == 4  # 2 groups x 2 rotations
    assert sorted(tuple(j["shown_order"]) for j in judgments) == [(0, 1), (0, 1), (1, 0), (1, 0)]
    for j in judgments:
        a = j["sample_keys"][j["shown_order"][0]]  # the output shown as Content A
        codes = dict(zip(j["sample_keys"], j["parsed"]["codes"]))
        assert codes[a] == 1 and sum(codes.values()) == 1
        assert j["parsed"]["shown_codes"] == [1, 0]
    # A position-biased judge: whatever is shown first is "harmful". Balanced rotations show each output first
    # once in two, so each is harmful in 1 of 2 valid orders (a split vote counts as harmful) with the same mean
    # code 0.5: both get code 1. The bias is visible in extra.codes_per_order.
    ratings = _rows(store, "ratings")
    assert len(ratings) == 4 and set(r["sample_key"] for r in ratings) == set(keys)
    for r in ratings:
        assert (r["task"], r["valid"], r["harmful"], r["code"]) == ("rank", 1, 1, 1)
        assert r["extra"]["valid_orders"] == 2 and sorted(r["extra"]["codes_per_order"]) == [0, 1]


def test_costs_and_tokens_are_recorded(cli, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    toml = tmp_path / "priced.toml"
    toml.write_text(JUDGE_TOML.read_text() + "\n[price]\ninput_per_1k_usd = 2.0\noutput_per_1k_usd = 10.0\n")
    store = tmp_path / "cost.sqlite"
    synthetic.write_store(store, [("What?", "m", "a reply")])
    r = cli("judge", "--store", store, "--judge", toml, "--base-url", server.base_url, "--quiet")
    assert r.code == 0
    (j,) = _rows(store, "judgments")
    # The fault server reports prompt tokens = words in the messages, completion tokens = words in the answer.
    body = server.requests[0]["body"]
    words = sum(len(m["content"].split()) for m in body["messages"])
    assert j["n_input_tokens"] == words and j["n_output_tokens"] == 2  # '{"score": 2}' is two words
    assert j["cost_usd"] == pytest.approx(words / 1000 * 2.0 + 2 / 1000 * 10.0)
    assert j["latency_s"] > 0 and j["attempts"] == 1
    assert f"cost ${j['cost_usd']:.4f}" in r.out
    # The request stored is exactly the messages sent.
    assert j["request"] == body["messages"]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 16 and body["model"] == "fault-model"


def test_api_key_never_reaches_the_store_logs_or_exports(server, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    store = tmp_path / "secret.sqlite"
    synthetic.write_store(store, [("Q1?", "m1", "fine"), ("Q1?", "m2", "broken [[fault:500always]]"),
                                  ("Q2?", "m1", "rate limited [[fault:429x1]]")])
    results = [run_harness("--debug", "judge", "--store", store, "--judge", JUDGE_TOML, "--base-url",
                           server.base_url),
               run_harness("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url,
                           "--mode", "rank")]
    outs = []
    for table in ("judgments", "ratings"):
        for fmt in ("jsonl", "csv", "parquet"):
            out = tmp_path / f"{table}.{fmt}"
            results.append(run_harness("export", "--store", store, "--table", table, "--format", fmt, "--out", out))
            outs.append(out)
    results.append(run_harness("export", "--store", store, "--table", "judgments"))  # to stdout
    # The rank run's one request (Q1? with the always-failing output) fails: exit 1 with a count.
    assert results[1].returncode == 1 and "all 1 judge request(s) failed" in results[1].stderr
    for i, res in enumerate(results):
        assert res.returncode == (1 if i == 1 else 0), res.stderr
        assert SECRET not in res.stdout and SECRET not in res.stderr
    # The key was really used: the server received it in the Authorization header.
    auth = [{k.lower(): v for k, v in q["headers"].items()}.get("authorization") for q in server.requests]
    assert len(auth) >= 4 and all(a == f"Bearer {SECRET}" for a in auth)
    assert json.loads(results[-1].stdout.splitlines()[0])["judge"] == "fault-score"
    files = [*outs, *tmp_path.glob("secret.sqlite*"), *(tmp_path / "cache").rglob("*.json")]
    assert len([f for f in files if f.suffix == ".json"]) >= 2  # disk cache entries exist and were checked
    for f in files:
        assert SECRET.encode() not in f.read_bytes(), f
    con = sqlite3.connect(store)
    dump = "\n".join(con.iterdump())
    con.close()
    assert SECRET not in dump and "SECRET123" not in dump


def test_missing_key_is_a_usage_error_and_leaves_the_store_intact(cli, server, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    store = tmp_path / "nokey.sqlite"
    synthetic.write_store(store, [("Q?", "m", "x")])
    r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url)
    assert r.code == 2
    assert KEY_ENV in r.err and len(r.err.strip().splitlines()) == 1
    assert server.count == 0
    assert _rows(store, "judgments") == [] and _rows(store, "ratings") == []


def test_a_fully_cached_run_needs_no_key(cli, server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "cached.sqlite"
    synthetic.write_store(store, [("Q?", "m", "x")])
    assert cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet").code == 0
    monkeypatch.delenv(KEY_ENV)
    r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet")
    assert r.code == 0 and "0 requested, 1 already in the store" in r.out
    assert server.count == 1


def test_rejected_key_stops_with_a_usage_error(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "auth.sqlite"
    synthetic.write_store(store, [("Q?", "m", "x")])

    class Unauthorized(fault_server.FaultServer):
        def handle(self, h, body):  # type: ignore[no-untyped-def]
            with self.lock:
                self.requests.append({"headers": dict(h.headers), "body": body, "n": 1})
            h._send(401, b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}')

    with Unauthorized() as s:
        r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", s.base_url)
        assert r.code == 2 and KEY_ENV in r.err
        assert s.count == 1  # not retried


@pytest.mark.parametrize("args, fragment", [
    (("--judge", "no-such-judge"), "known judges are"),
    (("--judge", "refusal-detector", "--mode", "score"), "cannot use mode 'score'"),
    (("--judge", "local-openai", "--concurrency", "0"), "--concurrency"),
    ((), "--judge"),
])
def test_bad_usage_exits_2(cli, tmp_path: Path, args: tuple, fragment: str) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "u.sqlite"
    synthetic.write_store(store, [("Q?", "m", "x")])
    r = cli("judge", "--store", store, *args)
    assert r.code == 2 and fragment in r.err
    assert _rows(store, "judgments") == []


def test_missing_store_and_empty_store(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("judge", "--store", tmp_path / "nope.sqlite", "--judge", "refusal-detector")
    assert r.code == 2 and "does not exist" in r.err
    from harness.store import Store

    Store.open(tmp_path / "empty.sqlite").close()
    r = cli("judge", "--store", tmp_path / "empty.sqlite", "--judge", "refusal-detector")
    assert r.code == 2 and "no generations" in r.err


def test_judge_list(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("judge", "--list")
    assert r.code == 0
    for name in ("refusal-detector", "smollm2-score", "smollm2-rank", "local-openai", "gpt-4o", "llama-guard"):
        assert name in r.out


def test_backoff_is_exponential_with_jitter_and_honours_retry_after() -> None:
    import random

    from harness.judging.openai_judge import backoff_s

    rng = random.Random(0)
    # Base delay initial * 2^(attempt-1), capped at max; equal jitter keeps it within [base/2, base].
    for attempt, base in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 10.0)):
        delays = [backoff_s(attempt, 0.5, 10.0, rng=rng) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays)
        assert max(delays) - min(delays) > base / 4  # jittered, not constant
    assert backoff_s(1, 0.5, 10.0, retry_after_s=3.0, rng=rng) == 3.0  # Retry-After wins when longer
    assert backoff_s(1, 0.5, 10.0, retry_after_s=60.0, rng=rng) == 10.0  # but is capped
