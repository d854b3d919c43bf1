"""Bulk judging through batch files: OpenAI Batch API requests out, its results back in as judgments.

`export_requests` writes one line per judgment a live run would request
({"custom_id": judgment key, "method": "POST", "url": "/v1/chat/completions", "body": ...}); the
body is built by the live judge's own code (OpenAIJudge.request_kwargs, response_format and all), so
the file is what the OpenAI Batch API and `vllm run-batch` take. Judgments already in the store, or
in the on-disk cache, are not exported. No API key is ever written: the body has none.

`import_results` reads the Batch API's output lines ({"id", "custom_id", "response": {"status_code",
"request_id", "body": chat.completion}, "error"}) and records them exactly as a live run records its
answers (harness.judging.runner: same parsing, same judgments, same ratings). An answer that failed
(an `error`, a status other than 200, a body without an answer) is stored with its error and exported
again next time; a custom_id that is not a judgment this judge plans on this store is refused before
anything is written; answers already stored are skipped, so importing a file twice adds nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import jsontext
from harness.errors import UsageError, require
from harness.judging.config import JudgeConfig
from harness.judging.requests import JudgeResponse, safe_error
from harness.judging.runner import (
    JudgeResult,
    _Prepared,
    plan_judging,
    record_answer,
    result_counts,
    write_ratings,
)
from harness.progress import NoProgress, Progress
from harness.store import Store

BATCH_URL = "/v1/chat/completions"


@dataclass(frozen=True)
class BatchExport:
    path: Path
    judge: str
    n_requests: int  # lines written
    n_judgments: int  # distinct judgments the plan needs
    n_cached_store: int  # already in the store (not exported)
    n_cached_disk: int  # answered by the on-disk cache (not exported; recorded by the import)


def _backend(cfg: JudgeConfig) -> Any:
    from harness.judging.kinds.openai import OpenAIJudgeConfig

    if not isinstance(cfg, OpenAIJudgeConfig):
        raise UsageError(f"judge '{cfg.name}' is a {cfg.kind} judge: batch files are for OpenAI-compatible judges "
                         f"(kind = \"openai\"); judge it live with `harness judge --judge {cfg.name}`")
    return cfg.make_backend()


def request_line(backend: Any, p: _Prepared) -> dict[str, Any]:
    """One Batch API request line: the chat request the live judge would send for this judgment."""
    from harness.judging.openai_judge import request_body

    return {"custom_id": p.judgment_key, "method": "POST", "url": BATCH_URL,
            "body": request_body(backend.request_kwargs(p.request))}


def export_requests(store: Store, cfg: JudgeConfig, out: str | Path, *, sample_keys: list[str] | None = None,
                    limit: int | None = None, use_disk_cache: bool = True, force: bool = False) -> BatchExport:
    """Write the Batch API request file for what a live run of this judge would request (an existing file only
    with `force`, like every other file the tool writes)."""
    backend = _backend(cfg)
    from harness.outputs import atomic_write, output_file

    path = output_file(out, force=force, option="--batch-export")
    plan = plan_judging(store, cfg, backend.identity_extra, sample_keys=sample_keys, limit=limit,
                        use_disk_cache=use_disk_cache)
    lines = [json.dumps(request_line(backend, p), ensure_ascii=False) for p in plan.todo]
    with atomic_write(path) as fh:
        fh.write("".join(line + "\n" for line in lines))
    return BatchExport(path, cfg.name, len(lines), len(plan.unique), len(plan.stored), len(plan.from_disk))


# -- results ---------------------------------------------------------------------------------------------
def read_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """The lines of a Batch API output file by custom_id; UsageError naming the line for anything malformed."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"--batch-import {p} does not exist: pass the results file the batch produced")
    shape = 'a Batch API output line is {"id", "custom_id", "response": {"status_code", "body"}, "error"}'
    out: dict[str, dict[str, Any]] = {}
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{p} is not UTF-8 text: pass the JSONL results file the batch produced") from exc
    for n, raw in jsontext.jsonl_lines(text):
        if not raw.strip():
            continue
        try:
            line = jsontext.loads(raw)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{p}:{n}: not JSON ({exc.msg}): {shape}") from exc
        if not isinstance(line, dict):
            raise UsageError(f"{p}:{n}: not a JSON object: {shape}")
        cid = line.get("custom_id")
        if not isinstance(cid, str) or not cid:
            raise UsageError(f"{p}:{n}: no custom_id: {shape}")
        response, error = line.get("response"), line.get("error")
        if response is None and error is None:
            raise UsageError(f"{p}:{n}: custom_id {cid!r} has neither a response nor an error: {shape}")
        if response is not None and (not isinstance(response, dict) or not isinstance(response.get("status_code"), int)):
            raise UsageError(f"{p}:{n}: custom_id {cid!r}: response has no status_code: {shape}")
        if cid in out and out[cid] != line:
            raise UsageError(f"{p}:{n}: custom_id {cid!r} appears twice with different answers: keep one of them")
        out[cid] = line
    return out


def _said(backend: Any, detail: Any) -> str:
    """What a results line says about a failure, the judge's key (and anything like a bearer token) redacted before
    it is cut to 300 characters."""
    return safe_error(str(detail), backend.cfg.secrets())[:300]


def response_of(backend: Any, p: _Prepared, line: dict[str, Any]) -> JudgeResponse:
    """A results line as the JudgeResponse a live request would have produced."""
    from harness.judging.openai_judge import BadResponse

    error, response = line.get("error"), line.get("response")
    if error is not None:
        if isinstance(error, dict):
            error = f"{error.get('code') or 'error'}: {error.get('message') or json.dumps(error)}"
        return JudgeResponse(None, error=f"batch request failed: {_said(backend, error)}", attempts=1)
    if not isinstance(response, dict):
        return JudgeResponse(None, error="batch request failed: the line has no response", attempts=1)
    status, body = response.get("status_code"), response.get("body")
    if status != 200:
        detail = body.get("error") if isinstance(body, dict) else body
        if isinstance(detail, dict):
            detail = detail.get("message") or json.dumps(detail)
        return JudgeResponse(None, error=f"HTTP {status} (batch): {_said(backend, detail)}", attempts=1)
    require("openai", "judges", "importing batch results")
    from openai.types.chat import ChatCompletion
    from pydantic import ValidationError

    try:
        completion = ChatCompletion.model_validate(body)
    except ValidationError as exc:
        first = str(exc).splitlines()[0]
        return JudgeResponse(None, error=f"BadResponse: the batch answer is not a chat.completion ({first})",
                             attempts=1)
    try:
        return backend.parse_completion(completion, p.request, attempts=1, latency_s=None)
    except BadResponse as exc:
        return JudgeResponse(None, error=f"BadResponse: {exc} (batch)", attempts=1)


def import_results(store: Store, cfg: JudgeConfig, results: str | Path, *, sample_keys: list[str] | None = None,
                   limit: int | None = None, use_disk_cache: bool = True,
                   progress: Progress | None = None) -> JudgeResult:
    """Record a Batch API results file as judgments and ratings, as a live run of this judge would."""
    started = time.perf_counter()
    progress = progress or NoProgress()
    backend = _backend(cfg)
    answers = read_results(results)
    plan = plan_judging(store, cfg, backend.identity_extra, sample_keys=sample_keys, limit=limit,
                        use_disk_cache=use_disk_cache)
    known = {p.judgment_key for p in plan.unique}
    unknown = [cid for cid in answers if cid not in known]
    if unknown:
        raise UsageError(f"{results}: {len(unknown)} custom_id(s) are not judgments judge '{cfg.name}' plans on "
                         f"store {store.path} (first: {unknown[0]!r}): export the requests again with the same "
                         "judge, options and store (`harness judge --batch-export`); nothing was imported")
    n = {"answered": 0, "failed": 0, "in": 0, "out": 0, "missing": 0}
    progress.start(len(plan.unique), f"importing batch answers: {cfg.name} ({cfg.mode})", len(plan.stored))
    try:
        for p, cached in plan.from_disk:
            record_answer(store, plan, p, cached)
            progress.advance()
        for p in plan.todo:
            line = answers.get(p.judgment_key)
            if line is None:
                n["missing"] += 1
                continue
            resp = response_of(backend, p, line)
            record_answer(store, plan, p, resp, save_to_disk=True)
            n["answered"] += 1
            n["failed"] += resp.error is not None
            n["in"] += resp.n_input_tokens or 0
            n["out"] += resp.n_output_tokens or 0
            progress.advance()
    finally:
        progress.stop()
    ratings, final = write_ratings(store, plan)
    return JudgeResult(
        cfg.name, cfg.kind, cfg.mode, n_requested=n["answered"], n_cached_store=len(plan.stored),
        n_cached_disk=len(plan.from_disk), n_requests_failed=n["failed"], n_input_tokens=n["in"],
        n_output_tokens=n["out"], cost_usd=cfg.cost_usd(n["in"], n["out"]) if cfg.price_known() else None,
        elapsed_s=time.perf_counter() - started, ratings=ratings, n_not_answered=n["missing"],
        **result_counts(plan, final, ratings))
