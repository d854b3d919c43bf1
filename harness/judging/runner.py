"""Running a judge over a store: plan tasks, serve what is cached, request the rest concurrently, write records.

For each task the judgment key is computed first. A judgment already in the store
(without a request error) is reused; else an answer in the on-disk cache is
reused; only what is left is requested, with up to the judge's concurrency in
flight. Each judgment is committed as soon as it arrives, so an interrupted run
loses at most the requests in flight and a re-run asks only for what is missing.
Judgments whose request failed (after retries) are stored with their error and
retried by the next run; unparseable answers are stored with their parse error
and kept (the judge gave that answer). Ratings are then (re)written for every
group judged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from harness.errors import UsageError
from harness.judging import diskcache
from harness.judging.config import JudgeConfig
from harness.judging.parsing import parse_answer
from harness.judging.rates import summarize_ratings
from harness.judging.records import (
    TASK_OF_MODE,
    judgment_key,
    judgment_row,
    ratings_for_group,
    request_key,
    view_for_task,
)
from harness.judging.requests import JudgeRequest, JudgeResponse, build_request
from harness.judging.rubrics import load_rubric
from harness.judging.tasks import JudgeTask, plan_tasks
from harness.store import Store

DETECTOR_RUBRIC = "refusal-patterns"


class Progress(Protocol):
    def start(self, total: int, description: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def stop(self) -> None: ...


class NoProgress:
    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def stop(self) -> None:
        pass


class JudgeBackend(Protocol):
    concurrency: int

    def identity_extra(self) -> dict[str, Any]: ...
    def prepare(self) -> None: ...  # before the first request: read the API key, load the model
    def complete(self, req: JudgeRequest) -> JudgeResponse: ...
    def close(self) -> None: ...


def make_backend(cfg: JudgeConfig) -> JudgeBackend:
    """The backend for a judge's kind (imports its dependency lazily)."""
    if cfg.kind == "openai":
        from harness.judging.openai_judge import OpenAIJudge

        return OpenAIJudge(cfg)
    if cfg.kind == "llama-cpp":
        from harness.judging.llama_judge import LlamaCppJudge

        return LlamaCppJudge(cfg)
    from harness.judging.refusal import RefusalDetectorJudge

    return RefusalDetectorJudge()


@dataclass
class JudgeSummary:
    judge: str
    kind: str
    mode: str
    n_tasks: int = 0  # judge tasks in the plan (tasks with identical inputs share one judgment)
    n_judgments: int = 0  # distinct judgments those tasks need
    n_requested: int = 0  # obtained by a request in this run
    n_cached_store: int = 0  # already in the store
    n_cached_disk: int = 0  # from the on-disk cache
    n_failed: int = 0  # request failed after retries (stored with its error)
    n_unparseable: int = 0  # answer stored with a parse error
    n_ties: int = 0  # rank answers with tied harmful ranks
    n_groups: int = 0
    n_singletons: int = 0  # rank/pairwise groups with one output (cannot be compared)
    n_oversize: int = 0  # rank groups larger than max_outputs
    n_generation_errors: int = 0  # generations without output, not judged
    n_ratings: int = 0
    n_invalid_ratings: int = 0
    n_input_tokens: int = 0  # of this run's requests
    n_output_tokens: int = 0
    cost_usd: float | None = None  # of this run's requests, when the judge has prices
    request_s: float = 0.0  # summed latency of this run's requests
    elapsed_s: float = 0.0
    model_load_s: float | None = None
    rates: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _generations(store: Store, sample_keys: list[str] | None) -> list[dict[str, Any]]:
    if sample_keys is None:
        return store.rows("generations", order="rowid")
    out: list[dict[str, Any]] = []
    keys = list(dict.fromkeys(sample_keys))
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        out += store.rows("generations", f"sample_key IN ({','.join('?' * len(chunk))})", chunk, order="rowid")
    return out


def _judgments(store: Store, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    keys = list(dict.fromkeys(keys))
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        for r in store.rows("judgments", f"judgment_key IN ({','.join('?' * len(chunk))})", chunk):
            out[r["judgment_key"]] = r
    return out


@dataclass
class _Prepared:
    task: JudgeTask
    request: JudgeRequest
    request_key: str
    judgment_key: str


def judge_store(store: Store, cfg: JudgeConfig, *, sample_keys: list[str] | None = None, limit: int | None = None,
                progress: Progress | None = None, use_disk_cache: bool = True,
                backend: JudgeBackend | None = None) -> JudgeSummary:
    """Judge the store's generations (or those in sample_keys) with one judge; see the module docstring."""
    started = time.perf_counter()
    progress = progress or NoProgress()
    mode = cfg.mode
    summary = JudgeSummary(cfg.name, cfg.kind, mode)
    plan = plan_tasks(_generations(store, sample_keys), mode, order=cfg.order, order_seed=cfg.order_seed,
                      max_outputs=cfg.max_outputs)
    groups = plan.groups[:limit] if limit is not None else plan.groups
    chosen = {id(g) for g in groups}
    tasks = [t for t in plan.tasks if id(t.group) in chosen]
    summary.n_singletons, summary.n_oversize = plan.n_singletons, plan.n_oversize
    summary.n_generation_errors, summary.n_groups, summary.n_tasks = plan.n_generation_errors, len(groups), len(tasks)
    if not tasks:
        summary.elapsed_s = time.perf_counter() - started
        return summary

    own_backend = backend is None
    backend = backend or make_backend(cfg)
    try:
        rubric_name = cfg.rubric_for(mode)
        rubric = load_rubric(rubric_name, cfg.path) if rubric_name else None
        if cfg.kind == "refusal":
            from harness.judging.refusal import detector_version

            rubric_name, rubric_version = DETECTOR_RUBRIC, detector_version()
        else:
            rubric_version = rubric.version if rubric else None
        identity = {**cfg.identity(), **backend.identity_extra()}
        prepared: list[_Prepared] = []
        for task in tasks:
            req = build_request(task, cfg, rubric)
            rkey = request_key(identity, rubric_name, rubric_version, mode, task.group.prompt,
                               [str(g.get("output") or "") for g in task.shown_generations])
            prepared.append(_Prepared(task, req, rkey, judgment_key(cfg.name, rkey)))

        # Tasks with identical inputs share one judgment (and one request).
        first_of_key: dict[str, _Prepared] = {}
        for p in prepared:
            first_of_key.setdefault(p.judgment_key, p)
        unique = list(first_of_key.values())
        existing = _judgments(store, (p.judgment_key for p in unique))
        disk = use_disk_cache and cfg.kind != "refusal"
        summary.n_judgments = len(unique)
        todo: list[_Prepared] = []
        from_disk: list[tuple[_Prepared, JudgeResponse]] = []
        for p in unique:
            row = existing.get(p.judgment_key)
            if row is not None and not row.get("error"):
                summary.n_cached_store += 1
                continue
            cached = diskcache.load(p.request_key) if disk else None
            if cached is not None:
                from_disk.append((p, cached))
            else:
                todo.append(p)
        if todo:
            backend.prepare()  # a missing API key or model fails here, before anything is written
        progress.start(len(unique), f"judging: {cfg.name} ({mode})")
        progress.advance(summary.n_cached_store)

        def record(p: _Prepared, resp: JudgeResponse) -> None:
            parsed = None
            if resp.error is None and resp.raw_response is not None:
                parsed = parse_answer(mode, resp.raw_response, k=p.request.k, max_score=cfg.max_score, ties=cfg.ties)
            row = judgment_row(cfg, p.task, p.request, p.judgment_key, rubric_name, rubric_version, resp, parsed)
            store.insert("judgments", row, replace=True)

        for p, cached in from_disk:
            record(p, cached)
            summary.n_cached_disk += 1
            progress.advance()

        def done(p: _Prepared, resp: JudgeResponse) -> None:
            record(p, resp)
            if disk:
                diskcache.save(p.request_key, resp, cfg.kind)
            summary.n_requested += 1
            summary.n_input_tokens += resp.n_input_tokens or 0
            summary.n_output_tokens += resp.n_output_tokens or 0
            summary.request_s += resp.latency_s or 0.0
            progress.advance()

        workers = max(1, min(int(getattr(backend, "concurrency", 1)), len(todo)))
        if workers == 1:
            for p in todo:
                done(p, backend.complete(p.request))
        else:
            _run_concurrently(backend, todo, workers, done)
        summary.model_load_s = getattr(backend, "load_s", None)
    finally:
        progress.stop()
        if own_backend:
            backend.close()

    if cfg.price_known():
        summary.cost_usd = cfg.cost_usd(summary.n_input_tokens, summary.n_output_tokens)
    final = _judgments(store, (p.judgment_key for p in unique))
    for j in final.values():
        if j.get("error"):
            summary.n_failed += 1
        elif j.get("parse_error"):
            summary.n_unparseable += 1
        elif mode == "rank" and (j.get("parsed") or {}).get("ties"):
            summary.n_ties += 1
    by_group: dict[int, list[dict[str, Any]]] = {}
    for p in prepared:
        j = final.get(p.judgment_key)
        if j is not None:
            by_group.setdefault(id(p.task.group), []).append(view_for_task(j, p.task))
    ratings: list[dict[str, Any]] = []
    for group in groups:
        ratings += ratings_for_group(cfg, mode, group, by_group.get(id(group), []))
    store.insert_many("ratings", ratings, replace=True)
    summary.n_ratings = len(ratings)
    summary.n_invalid_ratings = sum(1 for r in ratings if not r["valid"])
    summary.rates = summarize_ratings(ratings)
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _run_concurrently(backend: JudgeBackend, todo: list[_Prepared], workers: int,
                      done: Any) -> None:
    """Up to `workers` requests in flight; results are recorded (in this thread) as they complete."""
    pending: dict[Future[JudgeResponse], _Prepared] = {}
    queue = iter(todo)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge")
    try:
        for p in queue:
            pending[executor.submit(backend.complete, p.request)] = p
            if len(pending) >= workers:
                break
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                p = pending.pop(fut)
                done(p, fut.result())  # a UsageError (bad key) propagates and stops the run
                nxt = next(queue, None)
                if nxt is not None:
                    pending[executor.submit(backend.complete, nxt.request)] = nxt
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def task_name(mode: str) -> str:
    """The ratings task a mode writes."""
    if mode not in TASK_OF_MODE:
        raise UsageError(f"unknown mode '{mode}': use one of {', '.join(TASK_OF_MODE)}")
    return TASK_OF_MODE[mode]
