"""Importer for preference pairs: `pairwise-jsonl`, the `chosen` / `rejected` transcripts of HH-RLHF harmless-base.

Each line holds two dialogues that share every turn but the last assistant reply; crowdworkers chose
the less harmful one. Encoding in the store:

- item: the shared dialogue up to and including the last "\\n\\nAssistant:" (the prompt of the item);
- outputs: the two replies, as generations of the external model `hh-rlhf` with variants `reply-a`
  and `reply-b`, assigned by the replies' SHA-256 order so the variant does not reveal the choice;
- ratings: task `pairwise`, one per reply: code 1 (label 'rejected') for the more harmful reply,
  code 0 (label 'chosen') for the preferred one. `harmful` stays NULL although the rating is valid:
  a preference says which reply is worse, not whether either is harmful.

Lines without a shared dialogue prefix, with identical replies, or without both fields are rejected.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from harness.humans.records import external_generation, rating
from harness.humans.report import ImportReport
from harness.humans.textio import read_jsonl
from harness.records import Generation, Rating

FORMAT = "pairwise-jsonl"
MODEL = "hh-rlhf"
TURN = "\n\nAssistant:"


def split_pair(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(shared dialogue ending with 'Assistant:', chosen reply, rejected reply), or None without a shared prefix."""
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(TURN, 0, n)  # the last assistant turn that both dialogues contain in full
    if cut < 0:
        return None
    end = cut + len(TURN)
    return chosen[:end], chosen[end:].strip(), rejected[end:].strip()


def parse_pairwise(path: Path, store: Any = None, rater: str | None = None, **_: Any
                   ) -> tuple[list[Generation], list[Rating], ImportReport]:
    report = ImportReport(FORMAT)
    tf, objects, bad = read_jsonl(path, "pairwise-jsonl (chosen / rejected)")
    report.files.append(str(path))
    report.decoded(tf)
    report.rows_read = len(objects) + len(bad)
    for line, reason in bad:
        report.reject(path.name, line, reason)
    if objects and not any("chosen" in o and "rejected" in o for _, o in objects):
        from harness.errors import UsageError

        raise UsageError(f"{path} has no object with 'chosen' and 'rejected' keys: pass HH-RLHF style preference pairs")
    rater_name = rater or "human"
    generations: list[Generation] = []
    ratings: list[Rating] = []
    seen: dict[str, int] = {}
    for line, obj in objects:
        chosen, rejected = obj.get("chosen"), obj.get("rejected")
        if not isinstance(chosen, str) or not isinstance(rejected, str):
            report.reject(path.name, line, "needs string fields 'chosen' and 'rejected'")
            continue
        split = split_pair(chosen, rejected)
        if split is None:
            report.reject(path.name, line, "chosen and rejected share no dialogue before an Assistant turn")
            continue
        prompt, reply_c, reply_r = split
        if reply_c == reply_r:
            report.reject(path.name, line, "chosen and rejected replies are identical (no preference)")
            continue
        if not reply_c or not reply_r:
            report.reject(path.name, line, "an empty reply")
            continue
        replies = sorted([(hashlib.sha256(reply_c.encode()).hexdigest(), "chosen", reply_c),
                          (hashlib.sha256(reply_r.encode()).hexdigest(), "rejected", reply_r)])
        pair_key = "|".join(h for h, _, _ in replies) + "|" + prompt
        if pair_key in seen:
            report.reject(path.name, line, f"the same pair again (first at line {seen[pair_key]})")
            continue
        seen[pair_key] = line
        for (_digest, which, reply), variant in zip(replies, ("reply-a", "reply-b")):
            g = external_generation(FORMAT, MODEL, prompt, reply, variant=variant,
                                    settings={"source": FORMAT, "file": path.name, "line": line})
            generations.append(g)
            ratings.append(rating(FORMAT, rater=rater_name, rater_kind="human", task="pairwise", prompt=prompt,
                                  model=MODEL, variant=variant, sample_key=g.sample_key,
                                  code=1 if which == "rejected" else 0, label=which, harmful=None,
                                  extra={"line": line}))
    return generations, ratings, report
