"""What is judged together: generations grouped by prompt, and one judge task (outputs in a shown order).

Single-output modes (score, refusal, guard) judge one generation per task; grouped modes (rank,
pairwise) judge the outputs of every (model, variant) for the same prompt text, device, seed,
temperature and max_tokens together (harness.keys.group_key). Groups are formed from generation
fields only, so generations imported from the study (backend and device 'external') group the
same way as our own. A group carries the conversation its prompt ended (the judged history,
harness.judging.conversation): its members were sent the same turns, since the prompt's sha256 covers them. Modes
(harness.judging.modes) turn a group into tasks; harness.judging.tasks plans them.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness import keys
from harness.judging.conversation import ConversationReader, Turn
from harness.records import Generation


@dataclass
class Group:
    key: str
    item_id: str
    prompt: str
    generations: list[Generation]  # canonical order: model, variant, sample_key
    history: tuple[Turn, ...] = ()  # the conversation's turns before `prompt` (none: a single-turn prompt)


@dataclass
class JudgeTask:
    mode: str
    group: Group
    generations: list[Generation]  # the outputs judged together, canonical order
    shown_order: list[int]  # indices into `generations`, as shown (Content A first)

    @property
    def sample_keys(self) -> list[str]:
        return [g.sample_key for g in self.generations]

    @property
    def shown_generations(self) -> list[Generation]:
        return [self.generations[i] for i in self.shown_order]

    @property
    def k(self) -> int:
        return len(self.generations)


def _canonical(g: Generation) -> tuple[str, str, str]:
    return (str(g.model or ""), str(g.variant or ""), str(g.sample_key))


def group_key(g: Generation) -> str:
    return keys.group_key(g.prompt_sha256, g.prompt, g.device, g.seed, g.temperature, g.max_tokens, g.item_id)


def group_generations(rows: list[Generation], grouped: bool) -> list[Group]:
    """Groups in a stable order; one group per generation unless `grouped`."""
    groups: dict[str, list[Generation]] = {}
    for g in rows:
        key = group_key(g) if grouped else f"s:{g.sample_key}"
        groups.setdefault(key, []).append(g)
    out = []
    reader = ConversationReader()
    for key, members in groups.items():
        members.sort(key=_canonical)
        prompt = str(members[0].prompt or "")
        out.append(Group(key, members[0].item_id or keys.item_id(prompt), prompt, members,
                         reader.history(members[0])))
    out.sort(key=lambda grp: (grp.prompt, grp.key))
    return out
