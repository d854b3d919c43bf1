"""The on-disk judgment cache: answers of model judges keyed by request key, shared by every store.

Location: harness.cache.cache_dir()/judgments/<key[:2]>/<key>.json. Only answers
(raw text, token usage, latency, score probabilities) are kept, never requests'
credentials; failed requests are not cached, so a re-run retries them, and an entry whose fields are not what an
answer holds (requests.response_problem: a hand-edited or older file) is ignored and asked again. The
refusal detector is not cached on disk (it is instant).
"""

from __future__ import annotations

from pathlib import Path

from harness.cache import cache_dir, read_json, write_json_atomic
from harness.judging.requests import JudgeResponse, response_problem


def cache_path(request_key: str) -> Path:
    return cache_dir() / "judgments" / request_key[:2] / f"{request_key}.json"


def load(request_key: str) -> JudgeResponse | None:
    data = read_json(cache_path(request_key))
    if not isinstance(data, dict) or not isinstance(data.get("raw_response"), str):
        return None
    extra = data.get("extra")
    resp = JudgeResponse(
        raw_response=data["raw_response"],
        n_input_tokens=data.get("n_input_tokens"),
        n_output_tokens=data.get("n_output_tokens"),
        latency_s=data.get("latency_s"),
        attempts=0,
        extra=dict(extra) if isinstance(extra, dict) else {},
    )
    return None if response_problem(resp) is not None else resp  # a bad entry is asked again, never served


def save(request_key: str, resp: JudgeResponse, judge_kind: str) -> None:
    if resp.error is not None or resp.raw_response is None:
        return
    write_json_atomic(cache_path(request_key), {
        "raw_response": resp.raw_response, "n_input_tokens": resp.n_input_tokens,
        "n_output_tokens": resp.n_output_tokens, "latency_s": resp.latency_s, "extra": resp.extra,
        "judge_kind": judge_kind,
    })
