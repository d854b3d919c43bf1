"""Ensemble judges: several member judges' harm verdicts on each output, combined into one rating.

A TOML with `kind = "ensemble"`, `members = ["judge-a", "judge-b", ...]` (names, or .toml paths relative to
the ensemble's file) and `combine`:
- `majority`: harmful when more members call the output harmful than not; a tie counts as harmful (members
  that disagree flag the output); the code is the mean of the members' codes.
- `mean`: the mean of the members' codes (their scores, expected scores where they have them); harmful when it
  reaches the ensemble's `harmful_threshold`.
Each member runs as a judge of its own (cached and stored like any judgment); the ensemble's rating of an
output records every member's code, verdict and validity in `extra.members`. An output no member rated
validly gets an invalid rating.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any

from harness import keys
from harness.errors import UsageError
from harness.judging.config import JudgeConfig, load_judge
from harness.judging.runner import JudgeResult, judge_store
from harness.progress import NoProgress, Progress
from harness.rating_tasks import SCORE, is_per_output_verdict
from harness.records import Generation, Rating
from harness.store import Store

if TYPE_CHECKING:
    from harness.judging.kinds.ensemble import EnsembleJudgeConfig


def member_configs(cfg: EnsembleJudgeConfig) -> list[JudgeConfig]:
    """The member judges, each once: two entries that load the same judge (a name and its .toml path, or two
    files of one name) are refused, since members are told apart by name and one would silently count for both."""
    out: list[JudgeConfig] = []
    listed: dict[str, str] = {}
    for name in cfg.members:
        p = Path(name).expanduser()
        if p.suffix == ".toml" and not p.is_absolute() and cfg.path is not None:
            p = cfg.path.parent / p
        member = load_judge(str(p) if p.suffix == ".toml" else name)
        if member.name in listed:
            raise UsageError(f"ensemble judge '{cfg.name}': members '{listed[member.name]}' and '{name}' are both "
                             f"judge '{member.name}': list each judge once")
        listed[member.name] = name
        out.append(member)
    return out


def combine(cfg: EnsembleJudgeConfig, member_ratings: dict[str, Rating | None]) -> tuple[float | None, int | None, bool]:
    """(code, harmful, valid) of one output from its members' ratings (None: the member has none)."""
    valid = {n: r for n, r in member_ratings.items() if r is not None and r.valid and r.harmful is not None}
    if not valid:
        return None, None, False
    codes = [float(r.code) if r.code is not None else float(r.harmful or 0) for r in valid.values()]
    code = fmean(codes)
    if cfg.combine == "mean":
        return code, int(code >= cfg.harmful_threshold), True
    harmful = sum(int(r.harmful or 0) for r in valid.values())
    return code, int(2 * harmful >= len(valid)), True


def judge_ensemble(store: Store, cfg: EnsembleJudgeConfig, *, sample_keys: list[str] | None = None, limit: int | None = None,
                   progress: Progress | None = None, use_disk_cache: bool = True) -> JudgeResult:
    """Run every member over the outputs, then write the ensemble's combined ratings."""
    started = time.perf_counter()
    progress = progress or NoProgress()
    members = member_configs(cfg)
    results = [judge_store(store, m, sample_keys=sample_keys, limit=limit, progress=progress,
                           use_disk_cache=use_disk_cache) for m in members]
    gens: dict[str, Generation] = {g.sample_key: g for g in (store.generations(sample_keys=sample_keys)
                                                           if sample_keys is not None else store.generations())}
    by_member: dict[str, dict[str, Rating]] = {}
    for m, res in zip(members, results):
        by_member[m.name] = {r.sample_key: r for r in res.ratings if r.sample_key and is_per_output_verdict(r.task)}
    order = {k: i for i, k in enumerate(gens)}
    rated = sorted({k for ratings in by_member.values() for k in ratings}, key=lambda k: order.get(k, 0))
    ratings: list[Rating] = []
    for sk in rated:
        g = gens.get(sk)
        if g is None:
            continue
        mine = {name: by_member[name].get(sk) for name in by_member}
        code, harmful, valid = combine(cfg, mine)
        item = next((r.item_id for r in mine.values() if r is not None), g.item_id or keys.item_id(g.prompt))
        extra: dict[str, Any] = {"members": {n: None if r is None else {"code": r.code, "harmful": r.harmful,
                                                                        "valid": r.valid} for n, r in mine.items()},
                                 "combine": cfg.combine}
        ratings.append(Rating(
            rating_key=keys.judge_rating_key(cfg.name, SCORE.name, item, sk), source=f"judge:{cfg.name}", rater=cfg.name,
            rater_kind="judge", task=SCORE.name, item_id=item, prompt_id=g.prompt_id, category=g.category,
            model=g.model, variant=g.variant, sample_key=sk, code=code if valid else None,
            harmful=harmful if valid else None, valid=valid,
            error=None if valid else "no member of the ensemble rated this output validly", extra=extra))
    store.add(ratings, replace=True)
    total = JudgeResult(cfg.name, cfg.kind, cfg.mode)
    return replace(
        total, n_tasks=sum(r.n_tasks for r in results), n_judgments=sum(r.n_judgments for r in results),
        n_requested=sum(r.n_requested for r in results), n_cached_store=sum(r.n_cached_store for r in results),
        n_cached_disk=sum(r.n_cached_disk for r in results), n_failed=sum(r.n_failed for r in results),
        n_requests_failed=sum(r.n_requests_failed for r in results),
        n_unparseable=sum(r.n_unparseable for r in results), n_groups=max((r.n_groups for r in results), default=0),
        n_generation_errors=max((r.n_generation_errors for r in results), default=0), n_ratings=len(ratings),
        n_invalid_ratings=sum(1 for r in ratings if not r.valid),
        n_input_tokens=sum(r.n_input_tokens for r in results), n_output_tokens=sum(r.n_output_tokens for r in results),
        request_s=sum(r.request_s for r in results), elapsed_s=time.perf_counter() - started, ratings=ratings)
