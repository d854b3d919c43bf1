"""What to judge: generations grouped by prompt and turned into judge tasks per mode.

score / refusal / guard   one task per generation
rank                      one task per group (per shown order): the outputs of every
                          (model, variant) for the same prompt text, device, seed,
                          temperature and max_tokens, shown as Content A, B, C, ...
pairwise                  one task per pair within a group (per shown order)

Groups are formed from generation columns only (prompt_sha256, device, seed,
temperature, max_tokens), so generations imported from the study (backend and
device 'external') group the same way as our own. A group of one output cannot
be ranked and one larger than the judge's max_outputs is not shown at once;
both are counted and reported, never silently dropped.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from harness.items import item_id_for_prompt
from harness.judging.order import shown_orders

GROUPED_MODES = ("rank", "pairwise")


@dataclass
class Group:
    key: str
    item_id: str
    prompt: str
    generations: list[dict[str, Any]]  # canonical order: model, variant, sample_key


@dataclass
class JudgeTask:
    mode: str
    group: Group
    generations: list[dict[str, Any]]  # the outputs judged together, canonical order
    shown_order: list[int]  # indices into `generations`, as shown (Content A first)

    @property
    def sample_keys(self) -> list[str]:
        return [g["sample_key"] for g in self.generations]

    @property
    def shown_generations(self) -> list[dict[str, Any]]:
        return [self.generations[i] for i in self.shown_order]


@dataclass
class TaskPlan:
    tasks: list[JudgeTask] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    n_singletons: int = 0  # rank/pairwise groups of one output (cannot be compared)
    n_oversize: int = 0  # groups with more outputs than the judge shows at once
    n_generation_errors: int = 0  # generations without an output (failed runs)


def _canonical(g: dict[str, Any]) -> tuple[str, str, str]:
    return (str(g.get("model") or ""), str(g.get("variant") or ""), str(g["sample_key"]))


def group_key(g: dict[str, Any]) -> str:
    prompt_hash = g.get("prompt_sha256") or hashlib.sha256(str(g.get("prompt") or "").encode("utf-8")).hexdigest()
    parts = [prompt_hash, g.get("device"), g.get("seed"), g.get("temperature"), g.get("max_tokens")]
    return hashlib.sha256(json.dumps(parts, default=str).encode("utf-8")).hexdigest()[:16]


def group_generations(rows: list[dict[str, Any]], grouped: bool) -> list[Group]:
    """Groups in a stable order; one group per generation unless `grouped`."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for g in rows:
        key = group_key(g) if grouped else f"s:{g['sample_key']}"
        groups.setdefault(key, []).append(g)
    out = []
    for key, members in groups.items():
        members.sort(key=_canonical)
        prompt = str(members[0].get("prompt") or "")
        out.append(Group(key, item_id_for_prompt(prompt), prompt, members))
    out.sort(key=lambda grp: (grp.prompt, grp.key))
    return out


def plan_tasks(rows: list[dict[str, Any]], mode: str, *, order: str = "fixed", order_seed: int = 0,
               max_outputs: int = 8) -> TaskPlan:
    """The judge tasks for these generation rows in this mode."""
    plan = TaskPlan()
    usable = []
    for g in rows:
        if g.get("error") or g.get("output") is None:
            plan.n_generation_errors += 1
        else:
            usable.append(g)
    grouped = mode in GROUPED_MODES
    for group in group_generations(usable, grouped):
        if not grouped:
            plan.groups.append(group)
            plan.tasks.append(JudgeTask(mode, group, group.generations, [0]))
            continue
        n = len(group.generations)
        if n < 2:
            plan.n_singletons += 1
            continue
        if mode == "rank" and n > max_outputs:
            plan.n_oversize += 1
            continue
        plan.groups.append(group)
        if mode == "rank":
            for shown in shown_orders(n, order, order_seed, group.key):
                plan.tasks.append(JudgeTask(mode, group, group.generations, shown))
        else:
            for i, j in itertools.combinations(range(n), 2):
                pair = [group.generations[i], group.generations[j]]
                pair_key = f"{group.key}|{pair[0]['sample_key']}|{pair[1]['sample_key']}"
                for shown in shown_orders(2, order, order_seed, pair_key):
                    plan.tasks.append(JudgeTask(mode, group, pair, shown))
    return plan
