"""The OpenAI-compatible judge against a hostile endpoint (tests/fixtures/judges/fault_server.py): every field of an
answer is untrusted, an echoed key is redacted everywhere, a slow drip ends at the deadline, a redirect to another
origin is not followed. The run finishes, each bad answer is a failed judgment with its reason, no key is stored or
printed, a re-run asks again (nothing bad is cached), and `harness report` still reads the store."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from faulthelp import JUDGE_TOML, KEY_ENV, fault_server, synthetic
from storehelp import table_rows

SECRET = "sk-hostile-SECRET-4242"

# output marker -> (a fragment of the recorded error (None: a good answer), attempts)
HOSTILE = {
    "hugeint": ("5,000-character number", 4),
    "deepjson": ("nested too deeply", 4),
    "usagelist": ("usage is list", 4),
    "usagehuge": ("out of range (at most 19 digits)", 4),
    "usagenan": ("NaN is not a JSON number", 4),
    "usageinf": ("Infinity is not a JSON number", 4),
    "usagestr": (None, 1),  # "12": the client's typed model reads it as the count 12
    "usageneg": ("is -5, outside", 4),
    "badutf8": ("not UTF-8 (byte 0xff", 4),
    "surrogate": ("lone surrogate", 4),
    "echo400": ("HTTP 400", 1),
    "echo500": ("HTTP 500", 4),
    "echo200": (None, 1),
    "drip": ("no complete answer within timeout_s = 1 s", 4),
    "redirect": ("redirected to http://127.0.0.1:", 1),
    "sameredirectx1": (None, 1),  # followed: the server counts two requests, the judgment one attempt
    "chunkedgarbage": ("APIConnectionError: Connection error. (RemoteProtocolError", 4),
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(KEY_ENV, SECRET)


def _rows(store: Path, table: str) -> list[dict]:
    from harness.store import Store

    with Store.open(store, create=False) as s:
        return table_rows(s, table, order="rowid")


def _no_secret_anywhere(tmp_path: Path, *texts: str) -> None:
    for text in texts:
        assert SECRET not in text and "SECRET-4242" not in text
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert b"SECRET-4242" not in f.read_bytes(), f
    for db in tmp_path.glob("*.sqlite"):
        con = sqlite3.connect(db)
        dump = "\n".join(con.iterdump())
        con.close()
        assert "SECRET-4242" not in dump


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def test_a_hostile_endpoint_is_recorded_reason_by_reason_and_the_store_stays_readable(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "hostile.sqlite"
    outputs = [(f"Prompt {k}?", "m", f"Reply [[fault:{k}]]") for k in HOSTILE] + [("Prompt fine?", "m", "A reply")]
    keys = synthetic.write_store(store, outputs)
    with fault_server.FaultServer(drip_s=0.2) as server, fault_server.FaultServer() as elsewhere:
        server.redirect_to = f"{elsewhere.base_url}/chat/completions"
        r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet")
        assert r.code == 0, r.err  # some answers were good: the run finished
        assert elsewhere.count == 0  # the redirect to another origin was not followed: the prompts stayed here
        failed = sum(1 for reason, _ in HOSTILE.values() if reason)
        assert f"{failed} failed" in r.out
        by_key = {j["sample_keys"][0]: j for j in _rows(store, "judgments")}
        assert set(by_key) == set(keys)
        for (kind, (reason, attempts)), key in zip(HOSTILE.items(), keys):
            j = by_key[key]
            assert j["attempts"] == attempts, (kind, j)
            if reason is None:
                assert j["error"] is None and j["parsed"] == {"score": 2}, (kind, j)
            else:
                assert j["error"] and reason in j["error"] and j["raw_response"] is None, (kind, j["error"])
                assert j["n_input_tokens"] is None and j["cost_usd"] is None and j["parsed"] is None
            assert _finite(j), kind
        assert "[redacted]" in by_key[keys[list(HOSTILE).index("echo400")]]["error"]
        assert "[redacted]" in by_key[keys[list(HOSTILE).index("echo500")]]["error"]
        assert "[redacted]" in by_key[keys[list(HOSTILE).index("echo200")]]["raw_response"]
        assert by_key[keys[list(HOSTILE).index("drip")]]["latency_s"] < 30  # 4 attempts of 1 s, not 4 of ~60 s
        report = cli("report", "--store", store, "--out", tmp_path / "report")
        assert report.code == 0, report.err
        # A re-run asks again for exactly the failed judgments: no bad answer was cached anywhere.
        before = server.count
        again = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet")
        assert again.code == 1 and "all 14 judge request(s) failed" in again.err  # every one re-asked failed again
        asked = sum(attempts for reason, attempts in HOSTILE.values() if reason)
        assert server.count - before == asked  # each failed judgment asked again, as many times as before
        assert elsewhere.count == 0
    _no_secret_anywhere(tmp_path, r.out, r.err, again.out, again.err, report.out, report.err)


def test_a_rejected_key_echoed_back_is_redacted_from_the_one_line_error(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "auth.sqlite"
    synthetic.write_store(store, [("Q?", "m", "x [[fault:echo401]]")])
    with fault_server.FaultServer() as server:
        r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet")
    assert r.code == 2 and KEY_ENV in r.err and "Bearer [redacted]): check the key" in r.err
    assert len(r.err.strip().splitlines()) == 1
    _no_secret_anywhere(tmp_path, r.out, r.err)


@pytest.mark.parametrize("url, fragment", [
    ("http://[::1/v1", "Invalid IPv6 URL"),
    ("http://127.0.0.1:99999/v1", "Port out of range"),
    ("http://:8080/v1", "has no host"),
    ("http://exa mple/v1", "spaces or control characters"),
    ("ftp://127.0.0.1/v1", "must start with http"),
])
def test_a_malformed_base_url_is_a_one_line_usage_error(cli, tmp_path: Path, url: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "u.sqlite"
    synthetic.write_store(store, [("Q?", "m", "x")])
    r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", url)
    assert r.code == 2 and fragment in r.err and "base_url" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    assert _rows(store, "judgments") == []


def test_a_bad_answer_in_the_disk_cache_is_asked_again(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A cache entry whose fields are not an answer's (hand-edited, or written by an older version) is ignored."""
    from harness.judging import diskcache

    store = tmp_path / "c.sqlite"
    synthetic.write_store(store, [("Q?", "m", "a reply")])
    with fault_server.FaultServer() as server:
        assert cli("judge", "--store", store, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet").code == 0
        (entry,) = (tmp_path / "cache").rglob("*.json")
        data = json.loads(entry.read_text())
        for bad in ("NaN", "1e999", "1" * 5000, '"twelve"', "-1", "[1]"):
            entry.write_text(json.dumps(data).replace('"n_input_tokens": ', f'"n_input_tokens": {bad}, "was": '))
            assert diskcache.load(entry.stem) is None, bad
        other = tmp_path / "d.sqlite"
        synthetic.write_store(other, [("Q?", "m", "a reply")])
        r = cli("judge", "--store", other, "--judge", JUDGE_TOML, "--base-url", server.base_url, "--quiet")
        assert r.code == 0, r.err
        assert server.count == 2  # asked again, not served the bad entry
        (j,) = _rows(other, "judgments")
        assert j["error"] is None and isinstance(j["n_input_tokens"], int)


def test_every_answer_is_checked_before_it_is_recorded() -> None:
    from harness.judging.requests import JudgeResponse, checked, response_problem

    good = JudgeResponse("Score: 1", n_input_tokens=10, n_output_tokens=2, latency_s=0.5, extra={"p": [0.5, 0.5]})
    assert response_problem(good) is None and checked(good) is good
    bad = {"n_input_tokens": [float("inf"), 10**30, -1, True, "3", [1]], "n_output_tokens": [float("nan")],
           "latency_s": [float("nan"), -1.0, "1"], "raw_response": ["caf\ud800", b"bytes"],
           "extra": [{"p": float("nan")}, {"p": object()}]}
    for name, values in bad.items():
        for value in values:
            resp = JudgeResponse(**{**good.__dict__, name: value})
            problem = response_problem(resp)
            assert problem, (name, value)
            out = checked(resp)
            assert out.error == f"BadResponse: {problem}" and out.raw_response is None and out.n_input_tokens is None
            assert out.error.encode("utf-8")
    # Errors are redacted and made storable; the configured key is redacted from the answer's text too.
    failed = checked(JudgeResponse(None, error="HTTP 400: you sent Bearer abc.def-123 and \ud800 key-XYZ-1"),
                     ["key-XYZ-1"])
    assert failed.error == "HTTP 400: you sent Bearer [redacted] and \\ud800 [redacted]"
    answered = checked(JudgeResponse("Score: 2; key-XYZ-1"), ["key-XYZ-1"])
    assert answered.raw_response == "Score: 2; [redacted]" and answered.error is None


def test_redact_removes_configured_secrets_and_bearer_like_tokens() -> None:
    from harness.errors import redact

    text = ('{"authorization": "Bearer sk-proj-abc123def456"} Authorization: tok3n-value hf_abcdefghijklmnopqrstuv '
            "sk-live-1234567890 and my-own-key-77")
    out = redact(text, ["my-own-key-77", None, ""])
    for leaked in ("sk-proj-abc123def456", "tok3n-value", "hf_abcdefghijklmnopqrstuv", "sk-live-1234567890",
                   "my-own-key-77"):
        assert leaked not in out
    assert out.count("[redacted]") == 5
    assert redact("a score of 3; tokens: 12") == "a score of 3; tokens: 12"  # ordinary text is kept
    assert redact("key-XYZ-1 and sk-test-123456789", ["key-XYZ-1"], patterns=False) == "[redacted] and sk-test-123456789"


def test_hub_errors_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.variants import hf

    monkeypatch.setenv("HF_TOKEN", "hf-private-token-999")
    said = hf._said(RuntimeError("401 Client Error: you sent hf-private-token-999 (Authorization: Bearer xyzxyzxyz)\n"
                                 "second line"))
    assert "hf-private-token-999" not in said and "xyzxyzxyz" not in said and "second line" not in said
    assert said.startswith("401 Client Error: you sent [redacted]")


@pytest.mark.parametrize("text, fragment", [
    ("1" * 5000, "5,000-character number"),
    ('{"a": NaN}', "NaN is not a JSON number"),
    ("[-Infinity]", "-Infinity is not a JSON number"),
    ("1e999", "not a finite number"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_jsontext_refuses_numbers_no_field_holds(text: str, fragment: str) -> None:
    from harness import jsontext

    with pytest.raises(json.JSONDecodeError, match=fragment):
        jsontext.loads(text)
    with pytest.raises(json.JSONDecodeError, match=fragment):
        jsontext.raw_decode(json.JSONDecoder(), "x " + text, 2)
    assert jsontext.loads('{"a": [1, 2.5, -3e2, null]}') == {"a": [1, 2.5, -300.0, None]}


def _batch(cli, tmp_path: Path, body: str) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A store, and a results file answering its one exported request with `body` (JSON text, spliced in as is)."""
    store = tmp_path / "b.sqlite"
    synthetic.write_store(store, [("Q?", "m", "a reply")])
    requests = tmp_path / "requests.jsonl"
    assert cli("judge", "--store", store, "--judge", JUDGE_TOML, "--batch-export", requests).code == 0
    (line,) = [json.loads(x) for x in requests.read_text().splitlines()]
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"id": "b1", "custom_id": line["custom_id"], "error": None,
                                   "response": {"status_code": 200, "request_id": "r1", "body": "BODY"}})
                       .replace('"BODY"', body) + "\n", encoding="utf-8")
    return store, results


@pytest.mark.parametrize("usage, fragment", [
    ('{"prompt_tokens": ' + "9" * 5000 + "}", "5,000-character number"),
    ('{"prompt_tokens": NaN}', "NaN is not a JSON number"),
    ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
])
def test_a_batch_results_line_outside_the_bounds_is_refused_naming_it(cli, tmp_path: Path, usage: str,  # type: ignore[no-untyped-def]
                                                                      fragment: str) -> None:
    body = '{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [], "usage": ' + usage + "}"
    store, results = _batch(cli, tmp_path, body)
    r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--batch-import", results)
    assert r.code == 2 and f"{results}:1: not JSON" in r.err and fragment in r.err, r.err
    assert _rows(store, "judgments") == []


@pytest.mark.parametrize("usage, fragment", [
    ('{"prompt_tokens": 5000000000, "completion_tokens": 1, "total_tokens": 1}', "outside"),
    ('{"prompt_tokens": -3, "completion_tokens": 1, "total_tokens": 1}', "outside"),
])
def test_a_batch_answer_with_bad_usage_is_a_failed_judgment(cli, tmp_path: Path, usage: str,  # type: ignore[no-untyped-def]
                                                            fragment: str) -> None:
    choice = '{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Score: 1"}}'
    body = ('{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [' + choice
            + '], "usage": ' + usage + "}")
    store, results = _batch(cli, tmp_path, body)
    r = cli("judge", "--store", store, "--judge", JUDGE_TOML, "--batch-import", results)
    assert r.code in (0, 1), r.err
    (j,) = _rows(store, "judgments")
    assert j["error"] and fragment in j["error"] and j["n_input_tokens"] is None, j
    assert cli("report", "--store", store, "--out", tmp_path / "report").code == 0
