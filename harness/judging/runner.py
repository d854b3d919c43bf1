"""Running a judge over a store: plan tasks, serve what is cached, request the rest concurrently, write records.

For each task the judgment key is computed first. A judgment already in the store (without a
request error) is reused; else an answer in the on-disk cache is reused; only what is left is
requested, with up to the judge's concurrency in flight (or, with `batch_size` > 1 and a backend that has
`complete_batch`, an in-process judge's, that many decoded together: the same judgments, keys and cache). Each judgment is committed as soon as it
arrives, so an interrupted run loses at most the requests in flight and a re-run asks only for what
is missing. Judgments whose request failed (after retries) are stored with their error and
retried by the next run (a failure never replaces another process's stored success); unparseable
answers are stored with their parse error and kept (the judge gave that answer). Ratings are then
(re)written for every group judged, by the judge's mode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from harness import keys
from harness.judging import diskcache
from harness.judging.config import JudgeConfig
from harness.judging.kinds import JudgeBackend
from harness.judging.modes import Mode
from harness.judging.parsing import Parsed
from harness.judging.requests import JudgeRequest, JudgeResponse, build_request, checked
from harness.judging.rubrics import load_rubric
from harness.judging.tasks import JudgeTask, plan_tasks
from harness.progress import NoProgress, Progress
from harness.records import Judgment, Rating
from harness.store import Store


def make_backend(cfg: JudgeConfig) -> JudgeBackend:
    """The backend for a judge's kind (imports its dependency lazily): harness.judging.kinds."""
    return cfg.make_backend()


@dataclass(frozen=True)
class JudgeResult:
    """What one judge did over a store (the Python API's `judge()` returns it)."""

    judge: str
    kind: str
    mode: str
    n_tasks: int = 0  # judge tasks in the plan (tasks with identical inputs share one judgment)
    n_judgments: int = 0  # distinct judgments those tasks need
    n_requested: int = 0  # obtained by a request in this run
    n_cached_store: int = 0  # already in the store
    n_cached_disk: int = 0  # from the on-disk cache
    n_failed: int = 0  # judgments whose request failed after retries (stored with their error)
    n_requests_failed: int = 0  # of this run's requests, those that failed
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
    n_not_answered: int = 0  # batch import: judgments the results file has no answer for (export them again)
    first_error: str | None = None  # the error of the first failed judgment stored (redacted), to name the reason
    ratings: list[Rating] = field(default_factory=list, repr=False)
    rates: list[Any] = field(default_factory=list)  # filled by the API (harness.rates.judge_rates)

    @property
    def s_per_judgment(self) -> float | None:
        return self.request_s / self.n_requested if self.n_requested else None


@dataclass
class _Prepared:
    task: JudgeTask
    request: JudgeRequest
    request_key: str
    judgment_key: str
    rubric_version: str | None = None  # of the text the request rendered (harness.judging.rubrics)


def judgment_for(cfg: JudgeConfig, mode: Mode, p: _Prepared, rubric: str | None, resp: JudgeResponse,
                 parsed: Parsed | None, identity: str | None = None) -> Judgment:
    value = None
    if parsed is not None and parsed.ok and parsed.value is not None:
        value = mode.from_shown(parsed.value, p.task)
        value.update(resp.extra)
    return Judgment(
        judgment_key=p.judgment_key,
        judge=cfg.name,
        judge_kind=cfg.kind,
        judge_model=cfg.recorded_model(),
        mode=p.task.mode,
        rubric=rubric,
        rubric_version=p.rubric_version,
        item_id=p.task.group.item_id,
        sample_keys=p.task.sample_keys,
        shown_order=p.task.shown_order,
        request=p.request.messages,
        raw_response=resp.raw_response,
        parsed=value,
        parse_error=None if resp.error or parsed is None or parsed.ok else parsed.error,
        error=resp.error,
        n_input_tokens=resp.n_input_tokens,
        n_output_tokens=resp.n_output_tokens,
        cost_usd=(cfg.cost_usd(resp.n_input_tokens, resp.n_output_tokens)
                  if resp.n_input_tokens is not None or resp.n_output_tokens is not None else None),
        latency_s=resp.latency_s,
        attempts=resp.attempts,
        judge_identity=identity or cfg.card_identity(),
    )


def capped(resp: JudgeResponse, cap: int | None) -> JudgeResponse:
    """An answer cut to `cap` characters, the cut recorded in its extra."""
    if cap is None or resp.raw_response is None or len(resp.raw_response) <= cap:
        return resp
    return JudgeResponse(resp.raw_response[:cap], resp.error, resp.n_input_tokens, resp.n_output_tokens,
                         resp.latency_s, resp.attempts,
                         {**resp.extra, "answer_truncated_from_chars": len(resp.raw_response)})


@dataclass
class JudgingPlan:
    """What judging a store with one judge takes: its tasks, their requests and keys, and what is already known."""

    cfg: JudgeConfig
    mode: Mode
    groups: list[Any]  # the groups judged (after --limit)
    prepared: list[_Prepared]  # one per task
    unique: list[_Prepared]  # one per distinct judgment (tasks with identical inputs share one)
    rubric_name: str | None
    rubric_version: str | None
    counts: dict[str, Any]  # plan counts for JudgeResult
    stored: set[str] = field(default_factory=set)  # judgment keys the store holds without a request error
    from_disk: list[tuple[_Prepared, JudgeResponse]] = field(default_factory=list)  # answers in the disk cache
    todo: list[_Prepared] = field(default_factory=list)  # what must be asked
    use_disk_cache: bool = True
    card_identity: str | None = None  # JudgeConfig.card_identity(), recorded on every judgment


def plan_judging(store: Store, cfg: JudgeConfig, identity_extra: Callable[[], dict[str, Any]], *,
                 sample_keys: list[str] | None = None, limit: int | None = None,
                 use_disk_cache: bool = True) -> JudgingPlan:
    """Plan tasks, build each request and its keys, and sort the judgments into stored, in the disk cache, and
    to ask (live by a backend, or through a batch file: harness.judging.batch). `identity_extra` is the
    backend's (called only when there is something to judge)."""
    mode = cfg.judging_mode
    generations = store.generations(sample_keys=sample_keys) if sample_keys is not None else store.generations()
    plan = plan_tasks(generations, mode, order=cfg.order, order_seed=cfg.order_seed, max_outputs=cfg.max_outputs)
    groups = plan.groups[:limit] if limit is not None else plan.groups
    chosen = {id(g) for g in groups}
    tasks = [t for t in plan.tasks if id(t.group) in chosen]
    counts: dict[str, Any] = dict(n_singletons=plan.n_singletons, n_oversize=plan.n_oversize,
                                  n_generation_errors=plan.n_generation_errors, n_groups=len(groups),
                                  n_tasks=len(tasks))
    rubric_name: str | None = cfg.rubric_for(cfg.mode)
    rubric_version: str | None = None
    prepared: list[_Prepared] = []
    if tasks:
        rubric = load_rubric(rubric_name, cfg.path) if rubric_name else None
        rubric_version = rubric.version if rubric else None
        fixed = cfg.fixed_rubric()
        if fixed is not None:
            rubric_name, rubric_version = fixed
        identity = {**cfg.identity(), **identity_extra()}
        for task in tasks:
            req = build_request(task, cfg, rubric)
            version = rubric.version_for(bool(task.group.history)) if rubric and fixed is None else rubric_version
            rkey = keys.request_key(identity, rubric_name, version, cfg.mode, task.group.prompt,
                                    [str(g.output_for_judges or "") for g in task.shown_generations],
                                    history=task.group.history)
            prepared.append(_Prepared(task, req, rkey, keys.judgment_key(cfg.name, rkey), version))
    first_of_key: dict[str, _Prepared] = {}
    for p in prepared:
        first_of_key.setdefault(p.judgment_key, p)
    unique = list(first_of_key.values())
    out = JudgingPlan(cfg, mode, groups, prepared, unique, rubric_name, rubric_version, counts,
                      use_disk_cache=use_disk_cache and cfg.asks_a_model,
                      card_identity=cfg.card_identity() if prepared else None)
    counts["n_judgments"] = len(unique)
    existing = store.judgments(p.judgment_key for p in unique)
    for p in unique:
        row = existing.get(p.judgment_key)
        if row is not None and not row.error:
            out.stored.add(p.judgment_key)
            continue
        cached = diskcache.load(p.request_key) if out.use_disk_cache else None
        if cached is not None:
            out.from_disk.append((p, cached))
        else:
            out.todo.append(p)
    return out


def record_answer(store: Store, plan: JudgingPlan, p: _Prepared, resp: JudgeResponse, *,
                  save_to_disk: bool = False) -> None:
    """Check an answer (requests.checked: an answer with a bad field is a failed judgment, keys are redacted), parse
    it (or record its failure) and store the judgment; a fresh answer also goes to the disk cache when the plan
    uses it."""
    cfg, mode = plan.cfg, plan.mode
    resp = capped(checked(resp, cfg.secrets()), p.request.max_answer_chars)
    parsed = None
    if resp.error is None and resp.raw_response is not None:
        parsed = mode.parse(resp.raw_response, p.request.k, cfg)
    store.put_judgment(judgment_for(cfg, mode, p, plan.rubric_name, resp, parsed, plan.card_identity))
    if save_to_disk and plan.use_disk_cache:
        diskcache.save(p.request_key, resp, cfg.kind)


def write_ratings(store: Store, plan: JudgingPlan) -> tuple[list[Rating], dict[str, Judgment]]:
    """(Re)write the ratings of every group judged, by the judge's mode, from the judgments stored now."""
    final = store.judgments(p.judgment_key for p in plan.unique)
    by_group: dict[int, list[Judgment]] = {}
    for p in plan.prepared:
        j = final.get(p.judgment_key)
        if j is not None:
            by_group.setdefault(id(p.task.group), []).append(plan.mode.view(j, p.task))
    ratings: list[Rating] = []
    for group in plan.groups:
        ratings += plan.mode.ratings(plan.cfg, group, by_group.get(id(group), []))
    store.add(ratings, replace=True)
    return ratings, final


def result_counts(plan: JudgingPlan, final: dict[str, Judgment], ratings: list[Rating]) -> dict[str, Any]:
    """The JudgeResult counts that describe what is stored after a run."""
    return dict(
        n_failed=sum(1 for j in final.values() if j.error),
        first_error=next((j.error for j in final.values() if j.error), None),
        n_unparseable=sum(1 for j in final.values() if not j.error and j.parse_error),
        n_ties=sum(1 for j in final.values() if not j.error and not j.parse_error and (j.parsed or {}).get("ties")
                   and plan.cfg.mode == "rank"),
        n_ratings=len(ratings), n_invalid_ratings=sum(1 for r in ratings if not r.valid), **plan.counts)


def judge_store(store: Store, cfg: JudgeConfig, *, sample_keys: list[str] | None = None, limit: int | None = None,
                progress: Progress | None = None, use_disk_cache: bool = True,
                backend: JudgeBackend | None = None, batch_size: int = 1) -> JudgeResult:
    """Judge the store's generations (or those in sample_keys) with one judge; see the module docstring.
    `batch_size` > 1: up to that many judged at once by a backend that can (its `complete_batch`)."""
    started = time.perf_counter()
    progress = progress or NoProgress()
    own_backend = backend is None
    made: list[JudgeBackend] = [backend] if backend is not None else []

    def the_backend() -> JudgeBackend:
        if not made:
            made.append(make_backend(cfg))
        return made[0]

    n = {"requested": 0, "in": 0, "out": 0, "failed": 0}
    request_s = 0.0
    model_load_s = None
    try:
        plan = plan_judging(store, cfg, lambda: the_backend().identity_extra(), sample_keys=sample_keys, limit=limit,
                            use_disk_cache=use_disk_cache)
        if not plan.prepared:
            return JudgeResult(cfg.name, cfg.kind, cfg.mode, elapsed_s=time.perf_counter() - started, **plan.counts)
        backend = the_backend()
        if plan.todo:
            backend.prepare()  # a missing API key or model fails here, before anything is written
        progress.start(len(plan.unique), f"judging: {cfg.name} ({cfg.mode})", len(plan.stored))
        for p, cached in plan.from_disk:
            record_answer(store, plan, p, cached)
            progress.advance()

        def done(p: _Prepared, resp: JudgeResponse) -> None:
            nonlocal request_s
            record_answer(store, plan, p, resp, save_to_disk=True)
            n["requested"] += 1
            n["failed"] += resp.error is not None
            n["in"] += resp.n_input_tokens or 0
            n["out"] += resp.n_output_tokens or 0
            request_s += resp.latency_s or 0.0
            progress.advance()

        workers = max(1, min(int(getattr(backend, "concurrency", 1)), len(plan.todo)))
        batched = getattr(backend, "complete_batch", None) if batch_size > 1 else None
        if batched is not None:
            for start in range(0, len(plan.todo), batch_size):
                part = plan.todo[start:start + batch_size]
                for p, resp in zip(part, batched([p.request for p in part], batch_size), strict=True):
                    done(p, resp)
        elif workers == 1:
            for p in plan.todo:
                done(p, backend.complete(p.request))
        else:
            _run_concurrently(backend, plan.todo, workers, done)
        model_load_s = getattr(backend, "load_s", None)
    finally:
        progress.stop()
        if own_backend and made:
            made[0].close()

    ratings, final = write_ratings(store, plan)
    return JudgeResult(
        cfg.name, cfg.kind, cfg.mode, n_requested=n["requested"], n_cached_store=len(plan.stored),
        n_cached_disk=len(plan.from_disk), n_requests_failed=n["failed"], n_input_tokens=n["in"],
        n_output_tokens=n["out"], cost_usd=cfg.cost_usd(n["in"], n["out"]) if cfg.price_known() else None,
        request_s=request_s, elapsed_s=time.perf_counter() - started, model_load_s=model_load_s, ratings=ratings,
        **result_counts(plan, final, ratings))


def _run_concurrently(backend: JudgeBackend, todo: list[_Prepared], workers: int,
                      done: Callable[[_Prepared, JudgeResponse], None]) -> None:
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


def judge_any(store: Store, cfg: JudgeConfig, *, sample_keys: list[str] | None = None, limit: int | None = None,
              progress: Progress | None = None, use_disk_cache: bool = True, batch_size: int = 1) -> JudgeResult:
    """Judge with any judge: by the kind's own way (an ensemble runs its members and combines them), else
    request by request (`judge_store`; `batch_size` outputs at once for an in-process judge that batches)."""
    own = cfg.own_judging()
    if own is not None:
        return own(store, cfg, sample_keys=sample_keys, limit=limit, progress=progress, use_disk_cache=use_disk_cache)
    return judge_store(store, cfg, sample_keys=sample_keys, limit=limit, progress=progress,
                       use_disk_cache=use_disk_cache, batch_size=batch_size)
