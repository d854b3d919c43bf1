"""Bulk judging through OpenAI Batch API files: export -> real answers -> import equals a live run.

The batch result file is built from a real llama.cpp server's answers to exactly the exported requests
(each body POSTed to the server as it stands), in the Batch API's output format; a live `harness judge`
on a copy of the same store must end with the same judgments and ratings.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from storehelp import table_rows

from harness.judging.local_server import LocalServer, start_llama_server
from harness.store import Store

pytestmark = pytest.mark.usefixtures("private_judgment_cache")
SECRET = "sk-batch-test-key-never-written-anywhere"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    from harness.variants import load_manifest, resolve_variant

    model = resolve_variant(load_manifest("smollm2-135m-instruct"), "Q4_1").path
    server = start_llama_server(model, n_ctx=2048, n_threads=2,
                                log_path=tmp_path_factory.mktemp("batch-server") / "server.log")
    try:
        yield server
    finally:
        server.stop()
        assert server.process.poll() is not None


def _rows(store: Path, table: str, where: str = "", params: tuple = ()) -> list[dict]:
    with Store.open(store, readonly=True) as s:
        return table_rows(s, table, where, params)


def _answer(server: LocalServer, lines: list[dict]) -> list[dict]:
    """What a batch service writes back: each request's body answered by the server, in the output format."""
    out = []
    for i, line in enumerate(lines):
        req = urllib.request.Request(f"http://127.0.0.1:{server.port}{line['url']}", method=line["method"],
                                     data=json.dumps(line["body"]).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            body = json.loads(r.read())
        out.append({"id": f"batch_req_{i}", "custom_id": line["custom_id"],
                    "response": {"status_code": 200, "request_id": f"req-{i}", "body": body}, "error": None})
    return out


def _write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def _judgments(store: Path) -> dict[str, dict]:
    return {j["judgment_key"]: {k: j[k] for k in ("mode", "request", "raw_response", "parsed", "parse_error", "error",
                                                  "shown_order", "sample_keys")}
            for j in _rows(store, "judgments")}


def _ratings(store: Path) -> dict[str, dict]:
    return {r["rating_key"]: {k: r[k] for k in ("task", "sample_key", "code", "harmful", "valid", "label",
                                                "judgment_key", "extra")}
            for r in _rows(store, "ratings")}


@pytest.mark.parametrize("options", [(), ("--mode", "rank", "--order", "balanced", "--limit", "2")],
                         ids=["score", "rank-balanced"])
def test_batch_export_then_import_equals_a_live_run(cli, small_store: Path, llama_server: LocalServer,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    options: tuple[str, ...]) -> None:
    monkeypatch.setenv("LOCAL_OPENAI_API_KEY", SECRET)
    live_store = tmp_path / "live.sqlite"
    shutil.copy(small_store, live_store)
    judge = ("--judge", "local-openai", "--base-url", llama_server.base_url, "--no-disk-cache", *options)
    requests = tmp_path / "requests.jsonl"
    r = cli("judge", "--store", small_store, *judge, "--batch-export", requests)
    assert r.code == 0, r.err
    text = requests.read_text(encoding="utf-8")
    assert SECRET not in text
    lines = [json.loads(x) for x in text.splitlines()]
    assert lines and len({x["custom_id"] for x in lines}) == len(lines)
    assert f"wrote {len(lines)} request(s)" in r.out
    for x in lines:
        assert set(x) == {"custom_id", "method", "url", "body"}
        assert (x["method"], x["url"]) == ("POST", "/v1/chat/completions")
        body = x["body"]
        # The judge's TOML: model "local", greedy, 64 tokens, seed 0, llama.cpp's json_object + schema constraint.
        assert (body["model"], body["temperature"], body["max_tokens"], body["seed"]) == ("local", 0.0, 64, 0)
        assert body["response_format"]["type"] == "json_object" and "schema" in body["response_format"]
        assert body["messages"][0]["role"] == "system" and body["messages"][-1]["role"] == "user"
    assert _rows(small_store, "judgments") == []  # exporting writes nothing to the store

    results = _write(tmp_path / "results.jsonl", _answer(llama_server, lines))
    served = llama_server.log_path.read_text(errors="replace").count("POST /v1/chat/completions")
    r = cli("judge", "--store", small_store, *judge, "--batch-import", results, "--quiet")
    assert r.code == 0, r.err
    assert f"{len(lines)} answer(s) imported" in r.out

    r = cli("judge", "--store", live_store, *judge, "--quiet")
    assert r.code == 0, r.err
    assert llama_server.log_path.read_text(errors="replace").count("POST /v1/chat/completions") - served == len(lines)
    batch_j, live_j = _judgments(small_store), _judgments(live_store)
    assert batch_j == live_j and len(batch_j) == len(lines)
    assert all(j["error"] is None and j["parse_error"] is None for j in batch_j.values())
    batch_r, live_r = _ratings(small_store), _ratings(live_store)
    assert batch_r == live_r and batch_r and all(x["valid"] for x in batch_r.values())
    # What only a live request knows: latency. A batch answer has none.
    assert all(j["latency_s"] is None and j["attempts"] == 1 for j in _rows(small_store, "judgments"))

    # Importing the same file again adds nothing; nothing is left to export.
    counts = (len(_rows(small_store, "judgments")), len(_rows(small_store, "ratings")))
    r = cli("judge", "--store", small_store, *judge, "--batch-import", results, "--quiet")
    assert r.code == 0 and "0 answer(s) imported" in r.out
    assert (len(_rows(small_store, "judgments")), len(_rows(small_store, "ratings"))) == counts
    assert _judgments(small_store) == batch_j
    r = cli("judge", "--store", small_store, *judge, "--batch-export", requests)
    assert r.code == 2 and "already exists: pass --force" in r.err  # every overwrite needs --force
    r = cli("judge", "--store", small_store, *judge, "--batch-export", requests, "--force")
    assert r.code == 0 and requests.read_text() == ""


def _completion(content: str) -> dict:
    """A chat.completion body as the Batch API returns it (its documented fields)."""
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": 150, "completion_tokens": 6, "total_tokens": 156}}


def test_failed_answers_are_recorded_and_unknown_ids_refused(cli, small_store: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    judge = ("--judge", "local-openai", "--no-disk-cache")
    requests = tmp_path / "requests.jsonl"
    assert cli("judge", "--store", small_store, *judge, "--batch-export", requests).code == 0
    ids = [json.loads(x)["custom_id"] for x in requests.read_text().splitlines()]
    assert len(ids) >= 4
    answers = [
        {"id": "b0", "custom_id": ids[0], "response": {"status_code": 200, "request_id": "r0",
                                                       "body": _completion('{"score": 2}')}, "error": None},
        {"id": "b1", "custom_id": ids[1], "response": None,
         "error": {"code": "batch_expired", "message": "This request could not be executed before the window"}},
        {"id": "b2", "custom_id": ids[2], "response": {"status_code": 500, "request_id": "r2",
                                                       "body": {"error": {"message": "server overloaded"}}},
         "error": None},
        {"id": "b3", "custom_id": ids[3], "response": {"status_code": 200, "request_id": "r3",
                                                       "body": _completion("I cannot rate this.")}, "error": None},
    ]
    # An id from another store or judge: refused, nothing written.
    before = small_store.read_bytes()
    bad = _write(tmp_path / "bad.jsonl", [*answers, {**answers[0], "custom_id": "not-a-judgment-of-this-store"}])
    r = cli("judge", "--store", small_store, *judge, "--batch-import", bad, "--quiet")
    assert r.code == 2 and "'not-a-judgment-of-this-store'" in r.err and "nothing was imported" in r.err
    assert small_store.read_bytes() == before
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_text(json.dumps(answers[0]) + "\n{not json\n")
    r = cli("judge", "--store", small_store, *judge, "--batch-import", garbled, "--quiet")
    assert r.code == 2 and "garbled.jsonl:2: not JSON" in r.err
    assert small_store.read_bytes() == before

    results = _write(tmp_path / "results.jsonl", answers)
    r = cli("judge", "--store", small_store, *judge, "--batch-import", results, "--quiet")
    assert r.code == 0, r.err
    assert f"{len(ids) - 4} judgment(s) not in the file" in r.out
    by_key = {j["judgment_key"]: j for j in _rows(small_store, "judgments")}
    assert set(by_key) == set(ids[:4])
    assert by_key[ids[0]]["parsed"]["score"] == 2 and by_key[ids[0]]["n_input_tokens"] == 150
    assert by_key[ids[1]]["error"].startswith("batch request failed: batch_expired")
    assert by_key[ids[2]]["error"] == "HTTP 500 (batch): server overloaded"
    assert by_key[ids[3]]["error"] is None and by_key[ids[3]]["parse_error"]  # an answer, but not a score
    ratings = {r["judgment_key"]: r for r in _rows(small_store, "ratings", "rater = 'local-openai'")}
    assert ratings[ids[0]]["valid"] == 1 and ratings[ids[0]]["code"] == 2 and ratings[ids[0]]["harmful"] == 1
    for k in ids[1:4]:  # never counted as harmless
        assert ratings[k]["valid"] == 0 and ratings[k]["harmful"] is None
    # The next export asks again for what failed and what was never answered, not for what was answered.
    assert cli("judge", "--store", small_store, *judge, "--batch-export", requests, "--force").code == 0
    again = {json.loads(x)["custom_id"] for x in requests.read_text().splitlines()}
    assert again == set(ids) - {ids[0], ids[3]}


def test_batch_files_need_an_openai_judge(cli, small_store: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("judge", "--store", small_store, "--judge", "smollm2-score", "--batch-export", tmp_path / "r.jsonl")
    assert r.code == 2 and "batch files are for OpenAI-compatible judges" in r.err
    r = cli("judge", "--store", small_store, "--judge", "local-openai", "--concurrency", "4",
            "--batch-export", tmp_path / "r.jsonl")
    assert r.code == 2 and "--concurrency is for live endpoints" in r.err
    r = cli("judge", "--store", small_store, "--judge", "local-openai", "--batch-import", tmp_path / "missing.jsonl")
    assert r.code == 2 and "does not exist" in r.err
