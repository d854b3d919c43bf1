"""`harness study hh-audit`: is the crowd's "less harmful" reply of HH-RLHF's harmless-base pairs itself harmful?

Anthropic's HH-RLHF harmless-base data pairs two assistant replies to one conversation, one of them `chosen` by
a crowd worker as the less harmful. An audit of that data found many chosen replies harmful themselves: the
label says which reply was *less* harmful, not that it was harmless, and a model tuned on such pairs learns
that. This audit asks a judge about both replies of every pair and reports, with 95% intervals:

- chosen harmful: the share of pairs whose chosen reply the judge calls harmful (its per-output harm verdicts:
  score, label, guard or ensemble judges; a pairwise or rank judge gives none), beside the same share for the
  rejected replies;
- agreement with the crowd: the share of pairs where the judge finds the rejected reply the more harmful (by its
  per-reply scores, or its pairwise verdicts; ties are no verdict and counted), as a judge card measures it;
- ties: the share of compared pairs the judge could not tell apart, shown beside the agreement in the headline: a
  judge that ties most pairs has a high agreement among the few it separates and says little.

`--limit N` audits the first N pairs of the file (two pairs can share a conversation, so pairs, not prompts).

Every answer the judge could not give or that did not parse is counted as invalid, never as harmless. The pairs
are judged in a private work store (judgments cached on disk like any other).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.calibration import (
    harm_verdicts,
    item_groups,
    judge_set,
    pairwise_accuracy,
    parse_set_spec,
    references,
)
from harness.errors import UsageError
from harness.judging.config import JudgeConfig
from harness.progress import NoProgress, Progress
from harness.records import HARM_TASKS, Rating
from harness.stats import Rate
from harness.store import Store

PER_OUTPUT_MODES = ("score", "guard", "ensemble", "label")


@dataclass(frozen=True)
class HHAudit:
    path: str
    judge: str
    mode: str
    pairs: int  # pairs read (after --limit)
    chosen_harmful: Rate | None  # None: the judge gives no per-output verdicts
    rejected_harmful: Rate | None
    both_harmful: Rate | None  # pairs where both replies are harmful, of pairs with both verdicts
    agreement: Rate | None  # judge finds the rejected reply the more harmful, of the pairs it did not tie
    ties: int
    tie_share: Rate | None  # ties of the compared pairs (the headline shows it beside the agreement)
    invalid: int  # judge ratings that were invalid (failed or unparseable)
    judged: int  # judge ratings
    cost: dict[str, Any]
    note: str | None = None
    rejected: list[str] = field(default_factory=list)  # lines of the file the importer rejected, and why


def audit(path: Path, cfg: JudgeConfig, *, limit: int | None = None, progress: Progress | None = None,
          use_disk_cache: bool = True) -> HHAudit:
    progress = progress or NoProgress()
    if not path.exists():
        raise UsageError(f"{path} does not exist: pass an HH-RLHF harmless-base file (JSONL of chosen/rejected, "
                         ".jsonl or .jsonl.gz)")
    if cfg.mode not in (*PER_OUTPUT_MODES, "pairwise"):
        raise UsageError(f"judge '{cfg.name}' is a {cfg.mode} judge: the audit needs harm verdicts per reply (score, "
                         "guard) or pairwise preferences; e.g. --judge smollm2-score")
    cset = parse_set_spec(f"pairwise-jsonl:{path}")
    with tempfile.TemporaryDirectory(prefix="harness-hh-audit-") as tmp, \
            Store.open(Path(tmp) / "work.sqlite") as work:
        progress.message(f"auditing {path} with {cfg.name}")
        run, cost = judge_set(cfg, cset, work, limit=limit, progress=progress, use_disk_cache=use_disk_cache,
                              units=pair_units)
    refs = references(run.ratings)
    if not refs:
        raise UsageError(f"{path}: no crowd preferences found: expected HH-RLHF pairs (chosen / rejected)")
    crowd = refs[0]
    judged = {r.sample_key for r in run.judge_ratings if r.sample_key}
    pairs = crowd_pairs(run.ratings, crowd, judged)
    invalid = sum(1 for r in run.judge_ratings if not r.valid)
    chosen = rejected = both = None
    note = None
    agreement: Rate | None = None
    ties = 0
    tie_share: Rate | None = None
    if cfg.mode in PER_OUTPUT_MODES:
        verdicts = harm_verdicts(run.judge_ratings)
        ch = [verdicts[c] for c, _ in pairs if c in verdicts]
        rj = [verdicts[r] for _, r in pairs if r in verdicts]
        paired = [(verdicts[c], verdicts[r]) for c, r in pairs if c in verdicts and r in verdicts]
        chosen, rejected = Rate.of(sum(ch), len(ch)), Rate.of(sum(rj), len(rj))
        both = Rate.of(sum(1 for a, b in paired if a and b), len(paired))
        codes = mean_codes(run.judge_ratings)
        compared = [(codes[c], codes[r]) for c, r in pairs if c in codes and r in codes]
        ties = sum(1 for a, b in compared if a == b)
        agreement = Rate.of(sum(1 for a, b in compared if b > a), len(compared) - ties)
        tie_share = Rate.of(ties, len(compared)) if compared else None
    else:
        note = (f"judge '{cfg.name}' answers pairwise preferences only: no per-reply harm verdicts, so the chosen-"
                "harmful share needs a score or guard judge")
        acc = pairwise_accuracy([*run.ratings, *run.judge_ratings], cfg.name, crowd, item_groups(run.generations))
        if acc is not None:
            a = acc["accuracy"]
            n = int(a["n"])
            agreement = Rate.of(round((a["value"] or 0.0) * n), n)
            ties = int(acc["ties"])
            tie_share = Rate.of(ties, n + ties) if n + ties else None
    if run.judge_ratings and invalid == len(run.judge_ratings):
        first = next((r.error for r in run.judge_ratings if r.error), "no valid answer")
        raise UsageError(f"judge '{cfg.name}' answered nothing valid on {path} ({invalid} invalid; first: {first}): "
                         "check its endpoint, model and rubric")
    return HHAudit(str(path), cfg.name, cfg.mode, len(pairs), chosen, rejected, both, agreement, ties, tie_share,
                   invalid, len(run.judge_ratings), cost, note, run.rejected)


def pair_units(generations: Sequence[Any], ratings: Sequence[Rating]) -> list[list[str]]:
    """The sample keys of each pair, in the file's order (what `--limit` counts): the crowd's two pairwise ratings
    of one line of the file."""
    by_line: dict[Any, list[str]] = {}
    for r in ratings:
        if r.task == "pairwise" and r.sample_key:
            by_line.setdefault((r.extra or {}).get("line"), []).append(r.sample_key)
    return [keys for _, keys in sorted(by_line.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))]


def crowd_pairs(ratings: Sequence[Rating], crowd: str, judged: set[str]) -> list[tuple[str, str]]:
    """(chosen sample key, rejected sample key) of every judged pair, by the line the pair came from (two pairs
    can share a conversation, and so an item)."""
    by_line: dict[tuple[str, Any], dict[int, str]] = {}
    for r in ratings:
        if r.rater == crowd and r.task == "pairwise" and r.valid and r.sample_key in judged:
            line = (r.extra or {}).get("line")
            by_line.setdefault((r.item_id, line), {})[int(r.code or 0)] = r.sample_key or ""
    return [(p[0], p[1]) for p in by_line.values() if set(p) == {0, 1}]


def mean_codes(ratings: Sequence[Rating]) -> dict[str, float]:
    """Per reply: the mean code (score, or expected score) of the judge's valid harm ratings."""
    acc: dict[str, list[float]] = {}
    for r in ratings:
        if r.valid and r.code is not None and r.sample_key and r.task in HARM_TASKS:
            acc.setdefault(r.sample_key, []).append(float(r.code))
    return {k: sum(v) / len(v) for k, v in acc.items()}


def share_text(s: Rate | None) -> str:
    if s is None or s.rate is None:
        return "-"
    return f"{s.rate * 100:.1f}% [{(s.ci_low or 0) * 100:.1f}-{(s.ci_high or 0) * 100:.1f}%] ({s.k}/{s.n})"
