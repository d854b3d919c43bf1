"""What to judge: generations grouped by prompt and turned into judge tasks by a mode.

Single-output modes (score, refusal, guard) judge one generation per task; grouped modes (rank,
pairwise) judge the outputs of every (model, variant) for the same prompt text, device, seed,
temperature and max_tokens together (harness.keys.group_key). Groups are formed from generation
fields only, so generations imported from the study (backend and device 'external') group the
same way as our own. Groups a mode cannot judge (one output; more than the judge shows at once)
are counted and reported, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness import keys
from harness.records import Generation

if TYPE_CHECKING:
    from harness.judging.modes import Mode


@dataclass
class Group:
    key: str
    item_id: str
    prompt: str
    generations: list[Generation]  # canonical order: model, variant, sample_key


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


@dataclass
class TaskPlan:
    tasks: list[JudgeTask] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    n_singletons: int = 0  # rank/pairwise groups of one output (cannot be compared)
    n_oversize: int = 0  # groups with more outputs than the judge shows at once
    n_generation_errors: int = 0  # generations without an output (failed runs)


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
    for key, members in groups.items():
        members.sort(key=_canonical)
        prompt = str(members[0].prompt or "")
        out.append(Group(key, members[0].item_id or keys.item_id(prompt), prompt, members))
    out.sort(key=lambda grp: (grp.prompt, grp.key))
    return out


def plan_tasks(rows: list[Generation], mode: Mode | str, *, order: str = "fixed", order_seed: int = 0,
               max_outputs: int = 8) -> TaskPlan:
    """The judge tasks for these generations in this mode (a Mode, or its name)."""
    if isinstance(mode, str):
        from harness.judging.modes import get_mode

        mode = get_mode(mode)
    plan = TaskPlan()
    usable = []
    for g in rows:
        if g.error or g.output is None:
            plan.n_generation_errors += 1
        else:
            usable.append(g)
    for group in group_generations(usable, mode.grouped):
        gp = mode.plan(group, order, order_seed, max_outputs)
        if gp.skipped == "singleton":
            plan.n_singletons += 1
        elif gp.skipped == "oversize":
            plan.n_oversize += 1
        else:
            plan.groups.append(group)
            plan.tasks += gp.tasks
    return plan
